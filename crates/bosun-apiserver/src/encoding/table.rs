//! Server-side table printing: the `meta.k8s.io/v1` `Table` columns and row cells that
//! kube-apiserver returns when a client (kubectl) asks for
//! `application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! The columns and the cell computation mirror kube-apiserver's internal printers
//! (`pkg/printers/internalversion/printers.go`). The apiserver always generates the wide
//! variant, so `cells` returns one value per column, priority-1 columns included; kubectl
//! hides priority-1 columns unless `-o wide` is given.
//!
//! Cells keep the JSON type kube puts in them, which is not always the declared column
//! type: Deployment "Up-to-date"/"Available" and Event "Count" are declared `string` but
//! kube sends integers, and Bosun does the same so clients see identical bytes.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use bosun_api::selectors::{LabelSelector, SelectorError};

/// One column definition of a meta.k8s.io/v1 Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Human-readable column header, e.g. `"Name"`.
    pub name: &'static str,
    /// OpenAPI type of the column: `"string"`, `"integer"`, `"date"`, ...
    pub type_: &'static str,
    /// OpenAPI format modifier; `"name"` marks the column holding the object name.
    pub format: &'static str,
    /// Description of the column, taken from the API field documentation.
    pub description: &'static str,
    /// 0 for default columns, 1 for columns shown only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as a `TableColumnDefinition` JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column {
        name,
        type_,
        format,
        description,
        priority,
    }
}

// Descriptions are the swagger docs of the API fields kube references for each column.
pub(crate) const DESC_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const DESC_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const DESC_CONTAINERS: &str = "Names of each container in the template.";
const DESC_IMAGES: &str = "Images referenced by each container in the template.";
const DESC_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

/// The columns of the pod table.
pub static POD_COLUMNS: [Column; 9] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col(
        "Ready",
        "string",
        "",
        "The aggregate readiness state of this pod for accepting traffic.",
        0,
    ),
    col(
        "Status",
        "string",
        "",
        "The aggregate status of the containers in this pod.",
        0,
    ),
    col(
        "Restarts",
        "string",
        "",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        0,
    ),
    col("Age", "string", "", DESC_CREATED, 0),
    col(
        "IP",
        "string",
        "",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        1,
    ),
    col(
        "Node",
        "string",
        "",
        "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
        1,
    ),
    col(
        "Nominated Node",
        "string",
        "",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
        1,
    ),
    col(
        "Readiness Gates",
        "string",
        "",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
        1,
    ),
];

/// The columns of the deployment table.
pub static DEPLOYMENT_COLUMNS: [Column; 8] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col(
        "Ready",
        "string",
        "",
        "Number of the pod with ready state",
        0,
    ),
    col(
        "Up-to-date",
        "string",
        "",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        0,
    ),
    col(
        "Available",
        "string",
        "",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        0,
    ),
    col("Age", "string", "", DESC_CREATED, 0),
    col("Containers", "string", "", DESC_CONTAINERS, 1),
    col("Images", "string", "", DESC_IMAGES, 1),
    col(
        "Selector",
        "string",
        "",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        1,
    ),
];

/// The columns of the replicaset table.
pub static REPLICASET_COLUMNS: [Column; 8] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col(
        "Desired",
        "integer",
        "",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
        0,
    ),
    col(
        "Current",
        "integer",
        "",
        "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
        0,
    ),
    col(
        "Ready",
        "integer",
        "",
        "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
        0,
    ),
    col("Age", "string", "", DESC_CREATED, 0),
    col("Containers", "string", "", DESC_CONTAINERS, 1),
    col("Images", "string", "", DESC_IMAGES, 1),
    col(
        "Selector",
        "string",
        "",
        "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
        1,
    ),
];

/// The columns of the node table.
pub static NODE_COLUMNS: [Column; 10] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col("Status", "string", "", "The status of the node", 0),
    col("Roles", "string", "", "The roles of the node", 0),
    col("Age", "string", "", DESC_CREATED, 0),
    col(
        "Version",
        "string",
        "",
        "Kubelet Version reported by the node.",
        0,
    ),
    col("Internal-IP", "string", "", DESC_NODE_ADDRESSES, 1),
    col("External-IP", "string", "", DESC_NODE_ADDRESSES, 1),
    col(
        "OS-Image",
        "string",
        "",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        1,
    ),
    col(
        "Kernel-Version",
        "string",
        "",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        1,
    ),
    col(
        "Container-Runtime",
        "string",
        "",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        1,
    ),
];

/// The columns of the namespace table.
pub static NAMESPACE_COLUMNS: [Column; 3] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col("Status", "string", "", "The status of the namespace", 0),
    col("Age", "string", "", DESC_CREATED, 0),
];

/// The columns of the event table.
pub static EVENT_COLUMNS: [Column; 10] = [
    col(
        "Last Seen",
        "string",
        "",
        "The time at which the most recent occurrence of this event was recorded.",
        0,
    ),
    col(
        "Type",
        "string",
        "",
        "Type of this event (Normal, Warning), new types could be added in the future",
        0,
    ),
    col(
        "Reason",
        "string",
        "",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        0,
    ),
    col(
        "Object",
        "string",
        "",
        "The object that this event is about.",
        0,
    ),
    col(
        "Subobject",
        "string",
        "",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.",
        1,
    ),
    col(
        "Source",
        "string",
        "",
        "The component reporting this event. Should be a short machine understandable string.",
        1,
    ),
    col(
        "Message",
        "string",
        "",
        "A human-readable description of the status of this operation.",
        0,
    ),
    col(
        "First Seen",
        "string",
        "",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        1,
    ),
    col(
        "Count",
        "string",
        "",
        "The number of times this event has occurred.",
        1,
    ),
    col("Name", "string", "name", DESC_NAME, 1),
];

/// The columns of the lease table.
pub static LEASE_COLUMNS: [Column; 3] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col(
        "Holder",
        "string",
        "",
        "holderIdentity contains the identity of the holder of a current lease.",
        0,
    ),
    col("Age", "string", "", DESC_CREATED, 0),
];

/// The columns of the default (Name, Created At) table.
pub static DEFAULT_COLUMNS: [Column; 2] = [
    col("Name", "string", "name", DESC_NAME, 0),
    col("Created At", "date", "", DESC_CREATED, 0),
];

/// The `conditions` of a pod's `TableRow`: pods that ran to completion (phase Succeeded or
/// Failed) carry a `Completed` row condition, as in kube.
pub fn pod_row_conditions(obj: &Value) -> Option<Value> {
    let (reason, message) = match str_at(obj, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// kube's duration.HumanDuration (`5s`, `3m20s`, `2d3h`, `<invalid>`) for a non-negative duration.
pub fn human_duration(d: std::time::Duration) -> String {
    human_duration_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// kube's duration.HumanDuration for a signed duration: up to 2s in the future reads as
/// "0s" (clock skew), further in the future as `<invalid>`.
pub fn human_duration_signed(d: SignedDuration) -> String {
    human_duration_nanos(saturating_nanos(d))
}

/// Age of a RFC 3339 timestamp field, or `<unknown>` when absent, unparsable or Go's zero time.
pub fn translate_timestamp_since(ts: Option<&str>, now: Timestamp) -> String {
    since(ts.and_then(parse_time), now)
}

/// Label-selector string as `metav1.FormatLabelSelector` prints it: requirements sorted by
/// key (`app=web,tier in (a,b)`), `<none>` when the selector is absent or empty, `<error>`
/// when it is invalid.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Err(_) => "<error>".to_string(),
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
    }
}

/// `LabelSelectorAsSelector(..).String()`: "" for an absent or empty selector.
fn selector_string(selector: Option<&Value>) -> Result<String, SelectorError> {
    LabelSelector::from_api(selector.unwrap_or(&Value::Null)).map(|s| s.to_string())
}

// Go's time.Duration is int64 nanoseconds and `Time.Sub` saturates; mirror that.
fn saturating_nanos(d: SignedDuration) -> i64 {
    let n = d.as_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

fn human_duration_nanos(d: i64) -> String {
    const SEC: i64 = 1_000_000_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;
    // Up to two seconds in the future is tolerated as clock skew.
    let seconds = d / SEC;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MIN;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{h}h", hours / 24)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{dy}d", hours / 24 / 365)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// Go's zero time.Time (0001-01-01T00:00:00Z) is what an absent metav1.Time decodes to.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

fn parse_time(s: &str) -> Option<Timestamp> {
    if s.is_empty() {
        return None;
    }
    let t: Timestamp = s.parse().ok()?;
    if t.as_second() == GO_ZERO_UNIX_SECONDS && t.subsec_nanosecond() == 0 {
        return None;
    }
    Some(t)
}

fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "<unknown>".to_string(),
        Some(t) => human_duration_nanos(saturating_nanos(now.duration_since(t))),
    }
}

pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

fn bool_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    parse_time(str_at(v, path))
}

pub(crate) fn name_of(obj: &Value) -> Value {
    json!(str_at(obj, &["metadata", "name"]))
}

/// The number of keys of the object at `path`.
pub(crate) fn keys_at(v: &Value, path: &[&str]) -> usize {
    at(v, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

pub(crate) fn age_of(obj: &Value, now: Timestamp) -> Value {
    json!(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

fn or_placeholder(s: &str, placeholder: &str) -> String {
    if s.is_empty() {
        placeholder.to_string()
    } else {
        s.to_string()
    }
}

// A later time replaces the running maximum; an absent (zero) time never does.
fn keep_latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(c) = candidate
        && latest.is_none_or(|l| l < c)
    {
        *latest = Some(c);
    }
}

fn condition_status<'a>(pod: &'a Value, type_: &str) -> Option<&'a str> {
    list_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .map(|c| str_at(c, &["status"]))
}

/// A pod's row cells, in column order.
pub fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = list_at(pod, &["spec", "initContainers"]);
    let is_restartable_init = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, &["name"]) == name)
            .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
    };
    let total_containers = list_at(pod, &["spec", "containers"]).len()
        + init_specs
            .iter()
            .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready_containers = 0usize;
    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_init_restart: Option<Timestamp> = None;

    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    for cond in list_at(pod, &["status", "conditions"]) {
        if str_at(cond, &["type"]) == "PodScheduled"
            && str_at(cond, &["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let init_count = init_specs.len();
    let mut initializing = false;
    for (i, status) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = int_at(status, &["restartCount"]).unwrap_or(0);
        let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
        restarts += restart_count;
        keep_latest(&mut last_restart, finished);
        let restartable = is_restartable_init(str_at(status, &["name"]));
        if restartable {
            restartable_init_restarts += restart_count;
            keep_latest(&mut last_restartable_init_restart, finished);
        }
        let terminated = at(status, &["state", "terminated"]);
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        if let Some(t) = terminated
            && int_at(t, &["exitCode"]).unwrap_or(0) == 0
        {
            continue;
        }
        if restartable && bool_at(status, &["started"]) {
            if bool_at(status, &["ready"]) {
                ready_containers += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            let r = str_at(t, &["reason"]);
            let signal = int_at(t, &["signal"]).unwrap_or(0);
            if !r.is_empty() {
                format!("Init:{r}")
            } else if signal != 0 {
                format!("Init:Signal:{signal}")
            } else {
                format!("Init:ExitCode:{}", int_at(t, &["exitCode"]).unwrap_or(0))
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        initializing = true;
        break;
    }

    if !initializing || condition_status(pod, "Initialized") == Some("True") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        // Walk backwards so the first container's state has the final word.
        for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(status, &["restartCount"]).unwrap_or(0);
            keep_latest(
                &mut last_restart,
                time_at(status, &["lastState", "terminated", "finishedAt"]),
            );
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            let terminated = at(status, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let r = str_at(t, &["reason"]);
                let signal = int_at(t, &["signal"]).unwrap_or(0);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", int_at(t, &["exitCode"]).unwrap_or(0))
                };
            } else if bool_at(status, &["ready"]) && at(status, &["state", "running"]).is_some() {
                has_running = true;
                ready_containers += 1;
            }
        }
        // A pod whose containers report Completed while one still runs is not done yet.
        if reason == "Completed" && has_running {
            reason = if has_condition_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // The stored podIP is authoritative over podIPs (v1 -> internal conversion rule).
    let mut pod_ip = str_at(pod, &["status", "podIP"]);
    if pod_ip.is_empty() {
        pod_ip = list_at(pod, &["status", "podIPs"])
            .first()
            .map(|ip| str_at(ip, &["ip"]))
            .unwrap_or("");
    }
    let gates = list_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = gates
            .iter()
            .filter(|g| condition_status(pod, str_at(g, &["conditionType"])) == Some("True"))
            .count();
        format!("{true_conditions}/{}", gates.len())
    };

    vec![
        name_of(pod),
        json!(format!("{ready_containers}/{total_containers}")),
        json!(reason),
        json!(restarts_str),
        age_of(pod, now),
        json!(or_placeholder(pod_ip, "<none>")),
        json!(or_placeholder(str_at(pod, &["spec", "nodeName"]), "<none>")),
        json!(or_placeholder(
            str_at(pod, &["status", "nominatedNodeName"]),
            "<none>"
        )),
        json!(readiness_gates),
    ]
}

// hasPodReadyCondition looks at every condition, not only the first of a type.
fn has_condition_true(pod: &Value, type_: &str) -> bool {
    list_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == type_ && str_at(c, &["status"]) == "True")
}

fn container_cells(obj: &Value) -> (Value, Value) {
    let containers = list_at(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// A deployment's row cells, in column order.
pub fn deployment_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    // spec.replicas defaults to 1 when the object is decoded.
    let desired = int_at(d, &["spec", "replicas"]).unwrap_or(1);
    let ready = int_at(d, &["status", "readyReplicas"]).unwrap_or(0);
    let updated = int_at(d, &["status", "updatedReplicas"]).unwrap_or(0);
    let available = int_at(d, &["status", "availableReplicas"]).unwrap_or(0);
    // Deployments print the raw selector string: "" for none, "<invalid>" on error.
    let selector =
        selector_string(at(d, &["spec", "selector"])).unwrap_or_else(|_| "<invalid>".to_string());
    let (names, images) = container_cells(d);
    vec![
        name_of(d),
        json!(format!("{ready}/{desired}")),
        json!(updated),
        json!(available),
        age_of(d, now),
        names,
        images,
        json!(selector),
    ]
}

/// A replicaset's row cells, in column order.
pub fn replicaset_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let desired = int_at(rs, &["spec", "replicas"]).unwrap_or(1);
    let current = int_at(rs, &["status", "replicas"]).unwrap_or(0);
    let ready = int_at(rs, &["status", "readyReplicas"]).unwrap_or(0);
    let (names, images) = container_cells(rs);
    vec![
        name_of(rs),
        json!(desired),
        json!(current),
        json!(ready),
        age_of(rs, now),
        names,
        images,
        json!(format_label_selector(at(rs, &["spec", "selector"]))),
    ]
}

/// A node's row cells, in column order.
pub fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition is reported; a repeated type keeps its last entry.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push_str(",SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str()
                && !v.is_empty()
            {
                roles.push(v);
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |type_: &str| {
        list_at(node, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == type_)
            .map(|a| str_at(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let info =
        |field: &str| or_placeholder(str_at(node, &["status", "nodeInfo", field]), "<unknown>");

    vec![
        name_of(node),
        json!(status),
        json!(roles),
        age_of(node, now),
        json!(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// A namespace's row cells, in column order.
pub fn namespace_cells(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_of(ns),
        json!(str_at(ns, &["status", "phase"])),
        age_of(ns, now),
    ]
}

/// A lease's row cells, in column order.
pub fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_of(lease),
        json!(str_at(lease, &["spec", "holderIdentity"])),
        age_of(lease, now),
    ]
}

/// A event's row cells, in column order.
pub fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    // events.k8s.io/v1 objects share storage with core/v1 events and are printed after
    // conversion, which only renames fields.
    let new_api = str_at(ev, &["apiVersion"]).starts_with("events.k8s.io/");
    let (regarding, note, source, first_ts, last_ts, count_field, controller) = if new_api {
        (
            "regarding",
            "note",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
            "reportingController",
        )
    } else {
        (
            "involvedObject",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "reportingComponent",
        )
    };

    let first_time = time_at(ev, &[first_ts]);
    let first_seen = match first_time {
        Some(t) => since(Some(t), now),
        None => since(time_at(ev, &["eventTime"]), now),
    };
    let mut last_seen = match time_at(ev, &[last_ts]) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(ev, &[count_field]).unwrap_or(0);
    if let Some(series) = at(ev, &["series"]) {
        last_seen = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]).unwrap_or(0);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let kind = str_at(ev, &[regarding, "kind"]).to_lowercase();
    let object_name = str_at(ev, &[regarding, "name"]);
    let target = if object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{object_name}")
    };

    let component = first_non_empty(
        str_at(ev, &[source, "component"]),
        str_at(ev, &[controller]),
    );
    let host = first_non_empty(
        str_at(ev, &[source, "host"]),
        str_at(ev, &["reportingInstance"]),
    );
    let source_str = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };

    vec![
        json!(last_seen),
        json!(str_at(ev, &["type"])),
        json!(str_at(ev, &["reason"])),
        json!(target),
        json!(str_at(ev, &[regarding, "fieldPath"])),
        json!(source_str),
        json!(str_at(ev, &[note]).trim()),
        json!(first_seen),
        json!(count),
        name_of(ev),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// The cells of kube's default table (Name, Created At), for kinds without a printer.
pub fn default_cells(obj: &Value) -> Vec<Value> {
    let created = time_at(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![name_of(obj), json!(created)]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The row cells of `obj` as the apiserver prints them for `resource` (a plural name):
    /// through the kind's strategy, or kube's default table for kinds not served.
    fn cells(resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
        match crate::kinds::by_plural(resource) {
            Some(k) => k.table_cells(obj, now),
            None => default_cells(obj),
        }
    }

    fn columns(resource: &str) -> &'static [Column] {
        match crate::kinds::by_plural(resource) {
            Some(k) => k.table_columns(),
            None => &DEFAULT_COLUMNS,
        }
    }

    fn row_conditions(resource: &str, obj: &Value) -> Option<Value> {
        crate::kinds::by_plural(resource).and_then(|k| k.table_row_conditions(obj))
    }

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> String {
        now()
            .checked_sub(SignedDuration::from_secs(secs))
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn strs(v: &[Value]) -> Vec<String> {
        v.iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    const DAY: i64 = 86_400;

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (180 * 60, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (191 * 3600, "7d23h"),
            (192 * 3600, "8d"),
            (729 * DAY as u64, "729d"),
            (730 * DAY as u64, "2y"),
            (731 * DAY as u64, "2y1d"),
            (365 * 8 * DAY as u64, "8y"),
            (365 * 20 * DAY as u64, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(*secs)), *want, "{secs}s");
        }
        assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn human_duration_future_is_skew_then_invalid() {
        assert_eq!(
            human_duration_signed(SignedDuration::from_millis(-500)),
            "0s"
        );
        assert_eq!(
            human_duration_signed(SignedDuration::from_millis(-1999)),
            "0s"
        );
        assert_eq!(
            human_duration_signed(SignedDuration::from_secs(-2)),
            "<invalid>"
        );
        assert_eq!(
            human_duration_signed(SignedDuration::from_secs(-3600)),
            "<invalid>"
        );
    }

    #[test]
    fn translate_timestamp_since_cases() {
        let n = now();
        assert_eq!(translate_timestamp_since(Some(&ago(3 * DAY)), n), "3d");
        assert_eq!(translate_timestamp_since(Some(&ago(200)), n), "3m20s");
        assert_eq!(translate_timestamp_since(None, n), "<unknown>");
        assert_eq!(translate_timestamp_since(Some(""), n), "<unknown>");
        assert_eq!(
            translate_timestamp_since(Some("not a time"), n),
            "<unknown>"
        );
        assert_eq!(
            translate_timestamp_since(Some("0001-01-01T00:00:00Z"), n),
            "<unknown>"
        );
        assert_eq!(
            translate_timestamp_since(Some("2024-05-01T14:00:00+02:00"), n),
            "0s"
        );
        assert_eq!(
            translate_timestamp_since(Some("2024-05-01T12:00:10Z"), n),
            "<invalid>"
        );
    }

    #[test]
    fn column_definitions() {
        assert_eq!(columns("pods").len(), 9);
        assert_eq!(columns("deployments").len(), 8);
        assert_eq!(columns("replicasets").len(), 8);
        assert_eq!(columns("nodes").len(), 10);
        assert_eq!(columns("namespaces").len(), 3);
        assert_eq!(columns("events").len(), 10);
        assert_eq!(columns("leases").len(), 3);
        assert_eq!(columns("configmaps").len(), 3);
        assert_eq!(columns("secrets").len(), 4);
        assert_eq!(columns("widgets").len(), 2);
        let names: Vec<&str> = columns("pods").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let events: Vec<(&str, i32)> = columns("events")
            .iter()
            .map(|c| (c.name, c.priority))
            .collect();
        assert_eq!(
            events,
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ]
        );
        let restarts = columns("pods")[3].to_json();
        assert_eq!(
            restarts,
            json!({
                "name": "Restarts",
                "type": "string",
                "format": "",
                "description": "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                "priority": 0
            })
        );
        let name = columns("pods")[0].to_json();
        assert_eq!(name["format"], "name");
        assert_eq!(name["description"], DESC_NAME);
        let created = columns("widgets")[1].to_json();
        assert_eq!(created["name"], "Created At");
        assert_eq!(created["type"], "date");
        // Every table has exactly one name-format column.
        for r in [
            "pods",
            "deployments",
            "replicasets",
            "nodes",
            "namespaces",
            "events",
            "leases",
            "configmaps",
            "secrets",
            "x",
        ] {
            assert_eq!(
                columns(r).iter().filter(|c| c.format == "name").count(),
                1,
                "{r}"
            );
        }
    }

    #[test]
    fn running_pod() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(3 * DAY)},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "proxy"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(3 * DAY)}}},
                    {"name": "proxy", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(3 * DAY)}}}
                ]
            }
        });
        let c = cells("pods", &pod, now());
        assert_eq!(
            c,
            vec![
                json!("web-1"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("3d"),
                json!("10.0.0.5"),
                json!("node-a"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        assert_eq!(row_conditions("pods", &pod), None);
    }

    #[test]
    fn pending_pods() {
        let unscheduled = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(45)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending"}
        });
        assert_eq!(
            strs(&cells("pods", &unscheduled, now())),
            [
                "p", "0/1", "Pending", "0", "45s", "<none>", "<none>", "<none>", "<none>"
            ]
        );

        let creating = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(10)},
            "spec": {"nodeName": "n1", "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]
            }
        });
        assert_eq!(
            strs(&cells("pods", &creating, now()))[..4],
            ["p", "0/1", "ContainerCreating", "0"]
        );

        let gated = json!({
            "metadata": {"name": "g"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
            ]}
        });
        assert_eq!(
            strs(&cells("pods", &gated, now()))[..5],
            ["g", "0/1", "SchedulingGated", "0", "<unknown>"]
        );

        let evicted = json!({
            "metadata": {"name": "e"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Failed", "reason": "Evicted"}
        });
        assert_eq!(strs(&cells("pods", &evicted, now()))[2], "Evicted");
        assert_eq!(
            row_conditions("pods", &evicted),
            Some(
                json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}])
            )
        );
    }

    #[test]
    fn crash_looping_pod_with_restarts() {
        let pod = json!({
            "metadata": {"name": "crash", "creationTimestamp": ago(2 * 3600)},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.1.2.3",
                "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 5,
                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}},
                    {"name": "side", "ready": true, "restartCount": 1,
                     "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(3600)}}}
                ]
            }
        });
        assert_eq!(
            strs(&cells("pods", &pod, now()))[..5],
            ["crash", "1/2", "CrashLoopBackOff", "6 (5m ago)", "120m"]
        );

        // Restarts without a recorded termination time print the bare count.
        let no_time = json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"containerStatuses": [{"name": "app", "restartCount": 3, "ready": true, "state": {"running": {}}}]}
        });
        assert_eq!(
            strs(&cells("pods", &no_time, now()))[..4],
            ["x", "1/1", "", "3"]
        );

        // Terminated containers without a reason show the signal or exit code.
        let signal = json!({
            "metadata": {"name": "s"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}
        });
        assert_eq!(strs(&cells("pods", &signal, now()))[2], "Signal:9");
        let exit = json!({
            "metadata": {"name": "s"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]}
        });
        assert_eq!(strs(&cells("pods", &exit, now()))[2], "ExitCode:2");
    }

    #[test]
    fn first_container_state_wins() {
        let pod = json!({
            "metadata": {"name": "m"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ErrImagePull"}}},
                {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}
        });
        assert_eq!(strs(&cells("pods", &pod, now()))[2], "ErrImagePull");
    }

    #[test]
    fn init_container_pods() {
        let base = |statuses: Value| {
            json!({
                "metadata": {"name": "init", "creationTimestamp": ago(90)},
                "spec": {
                    "initContainers": [{"name": "i1"}, {"name": "i2"}, {"name": "i3"}],
                    "containers": [{"name": "app"}]
                },
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "Initialized", "status": "False"}],
                    "initContainerStatuses": statuses,
                    "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
                }
            })
        };
        let running_second = base(json!([
            {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}},
            {"name": "i3", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &running_second, now()))[..5],
            ["init", "0/1", "Init:1/3", "2 (30s ago)", "90s"]
        );

        let pull_backoff = base(json!([
            {"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &pull_backoff, now()))[2],
            "Init:ImagePullBackOff"
        );

        let initializing_wait = base(json!([
            {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &initializing_wait, now()))[2],
            "Init:0/3"
        );

        let failed = base(json!([
            {"name": "i1", "restartCount": 4, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &failed, now()))[2..4],
            ["Init:Error", "4"]
        );

        let exit_code = base(json!([
            {"name": "i1", "state": {"terminated": {"exitCode": 3}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &exit_code, now()))[2],
            "Init:ExitCode:3"
        );

        let signal = base(json!([
            {"name": "i1", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
        ]));
        assert_eq!(strs(&cells("pods", &signal, now()))[2], "Init:Signal:9");

        // All init containers done: the regular containers decide.
        let done = base(json!([
            {"name": "i1", "restartCount": 7, "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i3", "state": {"terminated": {"exitCode": 0}}}
        ]));
        assert_eq!(
            strs(&cells("pods", &done, now()))[..4],
            ["init", "0/1", "PodInitializing", "0"]
        );
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let pod = json!({
            "metadata": {"name": "sc"},
            "spec": {
                "initContainers": [{"name": "mesh", "restartPolicy": "Always"}, {"name": "setup"}],
                "containers": [{"name": "app"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "mesh", "started": true, "ready": true, "restartCount": 2,
                     "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}},
                    {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}
                ],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(1200)}}}]
            }
        });
        assert_eq!(
            strs(&cells("pods", &pod, now()))[..4],
            ["sc", "2/2", "Running", "3 (10m ago)"]
        );
    }

    #[test]
    fn terminating_pods() {
        let running = json!({
            "metadata": {"name": "t", "creationTimestamp": ago(600), "deletionTimestamp": ago(-30)},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}
        });
        assert_eq!(
            strs(&cells("pods", &running, now()))[..5],
            ["t", "1/1", "Terminating", "0", "10m"]
        );

        let node_lost = json!({
            "metadata": {"name": "t", "deletionTimestamp": ago(0)},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "reason": "NodeLost"}
        });
        assert_eq!(strs(&cells("pods", &node_lost, now()))[2], "Unknown");

        let succeeded = json!({
            "metadata": {"name": "t", "deletionTimestamp": ago(0)},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}
        });
        assert_eq!(
            strs(&cells("pods", &succeeded, now()))[..3],
            ["t", "0/1", "Completed"]
        );
        assert_eq!(
            row_conditions("pods", &succeeded),
            Some(
                json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
            )
        );
    }

    #[test]
    fn completed_container_with_running_sibling() {
        let pod = |ready: &str| {
            json!({
                "metadata": {"name": "c"},
                "spec": {"containers": [{"name": "job"}, {"name": "server"}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": [
                        {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "server", "ready": true, "state": {"running": {}}}
                    ]
                }
            })
        };
        assert_eq!(
            strs(&cells("pods", &pod("True"), now()))[..3],
            ["c", "1/2", "Running"]
        );
        assert_eq!(
            strs(&cells("pods", &pod("False"), now()))[..3],
            ["c", "1/2", "NotReady"]
        );
    }

    #[test]
    fn pod_wide_columns() {
        let pod = json!({
            "metadata": {"name": "w"},
            "spec": {
                "containers": [{"name": "a"}],
                "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
            },
            "status": {
                "phase": "Pending",
                "nominatedNodeName": "node-b",
                "podIPs": [{"ip": "fd00::1"}],
                "conditions": [
                    {"type": "example.com/lb", "status": "True"},
                    {"type": "example.com/dns", "status": "False"}
                ]
            }
        });
        assert_eq!(
            strs(&cells("pods", &pod, now()))[5..],
            ["fd00::1", "<none>", "node-b", "1/2"]
        );
    }

    #[test]
    fn deployment() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(5 * DAY + 4 * 3600)},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]
                },
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25"},
                    {"name": "sidecar", "image": "envoy:v1"}
                ]}}
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("deployments", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5d4h"),
                json!("nginx,sidecar"),
                json!("nginx:1.25,envoy:v1"),
                json!("app=web,tier in (a,b)")
            ]
        );

        let bare = json!({"metadata": {"name": "bare"}, "spec": {}});
        assert_eq!(
            cells("deployments", &bare, now()),
            vec![
                json!("bare"),
                json!("0/1"),
                json!(0),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("")
            ]
        );

        let invalid = json!({"metadata": {"name": "bad"}, "spec": {"selector": {
            "matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]
        }}});
        assert_eq!(cells("deployments", &invalid, now())[7], json!("<invalid>"));
    }

    #[test]
    fn replicaset() {
        let rs = json!({
            "metadata": {"name": "web-5d4f", "creationTimestamp": ago(40 * 60)},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"pod-template-hash": "5d4f", "app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
            },
            "status": {"replicas": 2, "readyReplicas": 1}
        });
        assert_eq!(
            cells("replicasets", &rs, now()),
            vec![
                json!("web-5d4f"),
                json!(2),
                json!(2),
                json!(1),
                json!("40m"),
                json!("nginx"),
                json!("nginx"),
                json!("app=web,pod-template-hash=5d4f")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "spec": {"selector": {}}});
        assert_eq!(cells("replicasets", &empty, now())[1], json!(1));
        assert_eq!(cells("replicasets", &empty, now())[7], json!("<none>"));
    }

    #[test]
    fn label_selector_formatting() {
        let sel = json!({
            "matchLabels": {"b": "2"},
            "matchExpressions": [
                {"key": "z", "operator": "DoesNotExist"},
                {"key": "a", "operator": "Exists"},
                {"key": "example.com/tier", "operator": "NotIn", "values": ["y", "x"]}
            ]
        });
        assert_eq!(
            format_label_selector(Some(&sel)),
            "a,b=2,example.com/tier notin (x,y),!z"
        );
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {}}))),
            "<none>"
        );
        let bad = [
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
            json!({"matchLabels": {"bad key!": "v"}}),
            json!({"matchLabels": {"k": "bad value!"}}),
            json!({"matchLabels": {"Upper.Case/k": "v"}}),
            json!({"matchLabels": {"a/b/c": "v"}}),
            json!({"matchLabels": {"k": 1}}),
            json!("app=web"),
        ];
        for b in &bad {
            assert_eq!(format_label_selector(Some(b)), "<error>", "{b}");
        }
        let long_name = "a".repeat(64);
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {long_name: "v"}}))),
            "<error>"
        );
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"k": ""}}))),
            "k="
        );
    }

    #[test]
    fn node_not_ready_scheduling_disabled_with_roles() {
        let node = json!({
            "metadata": {
                "name": "node-1",
                "creationTimestamp": ago(400 * DAY),
                "labels": {
                    "node-role.kubernetes.io/worker": "",
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "",
                    "kubernetes.io/role": "infra",
                    "kubernetes.io/hostname": "node-1"
                }
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "Unknown"}
                ],
                "addresses": [
                    {"type": "Hostname", "address": "node-1"},
                    {"type": "InternalIP", "address": "192.168.1.10"}
                ],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0",
                             "containerRuntimeVersion": "containerd://1.7.0"}
            }
        });
        assert_eq!(
            strs(&cells("nodes", &node, now())),
            [
                "node-1",
                "NotReady,SchedulingDisabled",
                "control-plane,infra,worker",
                "400d",
                "v1.32.0",
                "192.168.1.10",
                "<none>",
                "Ubuntu 24.04",
                "6.8.0",
                "containerd://1.7.0"
            ]
        );

        let bare = json!({"metadata": {"name": "n"}});
        assert_eq!(
            strs(&cells("nodes", &bare, now())),
            [
                "n",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );

        let ready = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(strs(&cells("nodes", &ready, now()))[1], "Ready");
    }

    #[test]
    fn core_event() {
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-1.17c0", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "  Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(3600),
            "lastTimestamp": ago(90),
            "count": 12,
            "type": "Warning"
        });
        assert_eq!(
            cells("events", &ev, now()),
            vec![
                json!("90s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web-1.17c0")
            ]
        );
    }

    #[test]
    fn event_time_and_series_fallbacks() {
        // New-style event recorded through core/v1: eventTime only, singleton count.
        let singleton = json!({
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Node"},
            "reason": "Starting",
            "message": "Starting kubelet.",
            "eventTime": "2024-05-01T11:59:30.123456Z",
            "reportingComponent": "kubelet",
            "reportingInstance": "node-a",
            "type": "Normal"
        });
        assert_eq!(
            strs(&cells("events", &singleton, now())),
            [
                "29s",
                "Normal",
                "Starting",
                "node",
                "",
                "kubelet, node-a",
                "Starting kubelet.",
                "29s",
                "1",
                "e1"
            ]
        );

        let series = json!({
            "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": ago(7200),
            "series": {"count": 4, "lastObservedTime": ago(20)},
            "reportingComponent": "controller",
            "type": "Normal"
        });
        let c = strs(&cells("events", &series, now()));
        assert_eq!(c[0], "20s");
        assert_eq!(c[5], "controller");
        assert_eq!(c[7], "120m");
        assert_eq!(c[8], "4");

        let nothing = json!({"metadata": {"name": "e3"}});
        assert_eq!(
            strs(&cells("events", &nothing, now())),
            ["<unknown>", "", "", "", "", "", "", "<unknown>", "1", "e3"]
        );
    }

    #[test]
    fn events_k8s_io_event() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e4"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "note": "Scaled up",
            "reason": "ScalingReplicaSet",
            "reportingController": "deployment-controller",
            "deprecatedFirstTimestamp": ago(300),
            "deprecatedLastTimestamp": ago(60),
            "deprecatedCount": 2,
            "type": "Normal"
        });
        assert_eq!(
            strs(&cells("events", &ev, now())),
            [
                "60s",
                "Normal",
                "ScalingReplicaSet",
                "deployment/web",
                "",
                "deployment-controller",
                "Scaled up",
                "5m",
                "2",
                "e4"
            ]
        );
    }

    #[test]
    fn namespace_lease_and_default() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(10 * DAY)}, "status": {"phase": "Active"}});
        assert_eq!(
            strs(&cells("namespaces", &ns, now())),
            ["kube-system", "Active", "10d"]
        );

        let lease = json!({
            "metadata": {"name": "kube-scheduler", "creationTimestamp": ago(3 * 3600 + 5 * 60)},
            "spec": {"holderIdentity": "sched-1_abc"}
        });
        assert_eq!(
            strs(&cells("leases", &lease, now())),
            ["kube-scheduler", "sched-1_abc", "3h5m"]
        );
        let free = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": null}});
        assert_eq!(strs(&cells("leases", &free, now())), ["l", "", "<unknown>"]);

        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "2024-04-30T08:15:00.5+02:00"}});
        assert_eq!(
            cells("widgets", &cm, now()),
            vec![json!("cfg"), json!("2024-04-30T06:15:00Z")]
        );
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(120)},
            "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            cells("configmaps", &cm, now()),
            vec![json!("cfg"), json!(3), json!("2m")]
        );
        let secret = json!({"metadata": {"name": "db", "creationTimestamp": ago(120)},
            "type": "Opaque", "data": {"password": "czNjcmV0"}});
        assert_eq!(
            cells("secrets", &secret, now()),
            vec![json!("db"), json!("Opaque"), json!(1), json!("2m")]
        );
        let unnamed = json!({});
        assert_eq!(
            cells("widgets", &unnamed, now()),
            vec![json!(""), json!("0001-01-01T00:00:00Z")]
        );
    }

    #[test]
    fn row_conditions_only_for_finished_pods() {
        let running = json!({"status": {"phase": "Running"}});
        assert_eq!(row_conditions("pods", &running), None);
        let done = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(row_conditions("deployments", &done), None);
    }
}
