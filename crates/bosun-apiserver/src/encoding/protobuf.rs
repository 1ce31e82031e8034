//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) turned into the
//! Kubernetes JSON a JSON client would have sent for the same object.
//!
//! Go clients (kubectl's typed clients, kubelet, controllers) send the 4-byte magic `k8s\0`
//! followed by a `runtime.Unknown` envelope whose `raw` field holds the object's own protobuf
//! message (k8s.io/api `generated.proto`). The conversion reproduces what Go's `encoding/json`
//! prints for the Go struct that the Kubernetes apiserver would have decoded from that message:
//!
//! - `omitempty` strings, numbers, booleans, lists and maps are dropped when zero or empty,
//!   because Go clients send many of them as present-but-empty protobuf fields;
//! - pointer fields (`*int32`, `*bool`, `*Struct`) are printed whenever the field is present,
//!   even when it holds a zero value;
//! - non-pointer struct fields are always printed, even with `omitempty` (`spec: {}`,
//!   `status: {}`, `strategy: {}`, `resources: {}`);
//! - fields without `omitempty` are always printed (`containers`, `containerPort`,
//!   `reportingComponent`, `nodeInfo.*`), lists and pointers as `null` when absent;
//! - a zero `metav1.Time`/`metav1.MicroTime` prints as `null` (so `creationTimestamp: null`,
//!   exactly as `kubectl ... -o json` shows it); other times print in UTC as RFC 3339, with
//!   whole seconds for `Time` and six fractional digits for `MicroTime`.
//!
//! Quantities are passed through as sent: Go clients always encode the canonical form, which
//! is also what the Kubernetes apiserver would print after re-parsing it. IntOrString values
//! print as a JSON number or string according to their type.
//!
//! Fields outside the covered set are dropped, the way a non-strict JSON decoder drops unknown
//! fields. Volume sources outside the covered set are rejected instead, because a volume that
//! silently loses its source would change meaning (an unset source reads as `emptyDir`).
//! Not rendered: ephemeral containers, pod resource claims and their statuses, Windows security
//! options, container `allocatedResourcesStatus`, node `configSource`/`config`, and fields that
//! appeared after Kubernetes 1.32 (apart from a few optional pointers such as
//! `terminatingReplicas` and `stopSignal`).

use std::collections::BTreeMap;
use std::fmt;

use bosun_api::resources::Resource;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

/// The Kubernetes protobuf media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Prefix of every Kubernetes protobuf body: "k8s" plus the envelope style byte 0
/// (a `runtime.Unknown` message follows).
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf request body could not be turned into Kubernetes JSON.
#[derive(Debug)]
pub enum DecodeError {
    /// The body does not start with the Kubernetes protobuf magic or has nothing after it.
    NotProtobuf,
    /// The envelope names a different kind than the one the request path expects.
    KindMismatch {
        /// Kind the request path expects.
        expected: String,
        /// Kind named in the envelope.
        got: String,
    },
    /// The envelope names an apiVersion this decoder does not serve for the kind.
    ApiVersionMismatch {
        /// apiVersion served for the kind.
        expected: String,
        /// apiVersion named in the envelope.
        got: String,
    },
    /// The envelope or the object is not valid protobuf for its message type.
    Protobuf(prost::DecodeError),
    /// The kind has no protobuf decoder.
    UnsupportedKind(String),
    /// The object uses a field whose protobuf form has no JSON rendering here.
    UnsupportedField(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotProtobuf => f.write_str("not a Kubernetes protobuf body"),
            DecodeError::KindMismatch { expected, got } => {
                write!(f, "expected kind {expected}, got {got}")
            }
            DecodeError::ApiVersionMismatch { expected, got } => {
                write!(f, "expected apiVersion {expected}, got {got}")
            }
            DecodeError::Protobuf(e) => write!(f, "invalid protobuf body: {e}"),
            DecodeError::UnsupportedKind(kind) => {
                write!(f, "unsupported kind {kind} for protobuf bodies")
            }
            DecodeError::UnsupportedField(what) => {
                write!(f, "unsupported field in protobuf body: {what}")
            }
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Protobuf(e) => Some(e),
            _ => None,
        }
    }
}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        DecodeError::Protobuf(e)
    }
}

/// Decodes a protobuf request body sent for `res` into the object's Kubernetes JSON, with
/// `apiVersion` and `kind` set and every field named and shaped as Kubernetes' own JSON
/// encoding prints it. The envelope is checked here; `object` decodes the kind's message
/// (`raw`) and renders it after `head`, through this module's function for the kind.
pub fn decode(
    res: &Resource,
    body: &[u8],
    object: impl FnOnce(Obj, &[u8]) -> Result<Value, DecodeError>,
) -> Result<Value, DecodeError> {
    let kind = res.kind;
    let api_version = res.api_version();
    let envelope = match body.strip_prefix(MAGIC) {
        Some(rest) if !rest.is_empty() => rest,
        _ => return Err(DecodeError::NotProtobuf),
    };
    let unknown = Unknown::decode(envelope)?;
    // Like the Kubernetes decoder, an envelope without type information takes the kind and
    // version of the endpoint it was sent to.
    if let Some(type_meta) = &unknown.type_meta {
        match type_meta.kind.as_deref() {
            Some(got) if !got.is_empty() && got != kind => {
                return Err(DecodeError::KindMismatch {
                    expected: kind.to_owned(),
                    got: got.to_owned(),
                });
            }
            _ => {}
        }
        match type_meta.api_version.as_deref() {
            Some(got) if !got.is_empty() && got != api_version => {
                return Err(DecodeError::ApiVersionMismatch {
                    expected: api_version,
                    got: got.to_owned(),
                });
            }
            _ => {}
        }
    }
    let raw = unknown.raw.as_deref().unwrap_or_default();
    let head = Obj::new()
        .set("kind", Value::from(kind))
        .set("apiVersion", Value::from(api_version));
    object(head, raw)
}

/// Builder for one JSON object, with one method per Go field shape.
#[derive(Debug, Default)]
pub struct Obj(Map<String, Value>);

impl Obj {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn done(self) -> Value {
        Value::Object(self.0)
    }

    fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }

    fn set_if(self, key: &str, value: Option<Value>) -> Self {
        match value {
            Some(value) => self.set(key, value),
            None => self,
        }
    }

    /// `string` with `omitempty`.
    pub(crate) fn str(self, key: &str, value: &Option<String>) -> Self {
        let value = value.as_deref().filter(|s| !s.is_empty());
        self.set_if(key, value.map(Value::from))
    }

    /// `string` without `omitempty`.
    fn str_req(self, key: &str, value: &Option<String>) -> Self {
        self.set(key, Value::from(value.as_deref().unwrap_or_default()))
    }

    /// `*string` with `omitempty`.
    fn str_ptr(self, key: &str, value: &Option<String>) -> Self {
        self.set_if(key, value.as_deref().map(Value::from))
    }

    /// Integer with `omitempty`.
    fn int<T: Into<i64>>(self, key: &str, value: Option<T>) -> Self {
        let value = value.map(Into::into).filter(|v| *v != 0);
        self.set_if(key, value.map(Value::from))
    }

    /// Integer without `omitempty`.
    fn int_req<T: Into<i64>>(self, key: &str, value: Option<T>) -> Self {
        self.set(key, Value::from(value.map_or(0, Into::into)))
    }

    /// Pointer to an integer with `omitempty`.
    fn int_ptr<T: Into<i64>>(self, key: &str, value: Option<T>) -> Self {
        self.set_if(key, value.map(|v| Value::from(v.into())))
    }

    /// `bool` with `omitempty`.
    fn bool(self, key: &str, value: Option<bool>) -> Self {
        self.set_if(key, value.filter(|b| *b).map(Value::from))
    }

    /// `bool` without `omitempty`.
    fn bool_req(self, key: &str, value: Option<bool>) -> Self {
        self.set(key, Value::from(value.unwrap_or_default()))
    }

    /// `*bool` with `omitempty`.
    pub(crate) fn bool_ptr(self, key: &str, value: Option<bool>) -> Self {
        self.set_if(key, value.map(Value::from))
    }

    /// `[]string` with `omitempty`.
    fn strs(self, key: &str, value: &[String]) -> Self {
        self.list(key, value, |s| Value::from(s.as_str()))
    }

    /// `[]string` without `omitempty`: an absent list is a nil slice, printed as `null`.
    fn strs_req(self, key: &str, value: &[String]) -> Self {
        self.list_req(key, value, |s| Value::from(s.as_str()))
    }

    /// `map[string]string` with `omitempty`.
    pub(crate) fn map(self, key: &str, value: &BTreeMap<String, String>) -> Self {
        if value.is_empty() {
            return self;
        }
        let map = value
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        self.set(key, Value::Object(map))
    }

    /// `map[string][]byte` with `omitempty`: each value base64, as JSON carries bytes.
    pub(crate) fn bytes_map(self, key: &str, value: &BTreeMap<String, Vec<u8>>) -> Self {
        use base64::Engine as _;
        if value.is_empty() {
            return self;
        }
        let map = value
            .iter()
            .map(|(k, v)| {
                let b = base64::engine::general_purpose::STANDARD.encode(v);
                (k.clone(), Value::from(b))
            })
            .collect();
        self.set(key, Value::Object(map))
    }

    /// `ResourceList` (`map[ResourceName]resource.Quantity`) with `omitempty`.
    fn quantities(self, key: &str, value: &BTreeMap<String, Quantity>) -> Self {
        if value.is_empty() {
            return self;
        }
        let map = value
            .iter()
            .map(|(k, q)| (k.clone(), quantity(q)))
            .collect();
        self.set(key, Value::Object(map))
    }

    /// Slice with `omitempty`.
    fn list<T>(self, key: &str, value: &[T], f: impl Fn(&T) -> Value) -> Self {
        self.values(key, value.iter().map(f).collect())
    }

    /// Slice without `omitempty`.
    fn list_req<T>(self, key: &str, value: &[T], f: impl Fn(&T) -> Value) -> Self {
        if value.is_empty() {
            return self.set(key, Value::Null);
        }
        self.set(key, Value::Array(value.iter().map(f).collect()))
    }

    /// Already converted slice with `omitempty`.
    fn values(self, key: &str, values: Vec<Value>) -> Self {
        if values.is_empty() {
            return self;
        }
        self.set(key, Value::Array(values))
    }

    /// Non-pointer struct: always printed, from its zero value when the field is absent.
    pub(crate) fn obj<T: Default>(
        self,
        key: &str,
        value: &Option<T>,
        f: impl Fn(&T) -> Value,
    ) -> Self {
        self.set(key, with_default(value, f))
    }

    /// Pointer to a struct with `omitempty`.
    fn opt<T>(self, key: &str, value: &Option<T>, f: impl Fn(&T) -> Value) -> Self {
        self.set_if(key, value.as_ref().map(f))
    }

    /// Pointer to a struct without `omitempty`.
    fn opt_req<T>(self, key: &str, value: &Option<T>, f: impl Fn(&T) -> Value) -> Self {
        self.set(key, value.as_ref().map_or(Value::Null, f))
    }

    /// `metav1.Time`: always printed, `null` when zero.
    fn time(self, key: &str, value: &Option<meta::Time>) -> Self {
        self.set(key, value.as_ref().map_or(Value::Null, time))
    }

    /// `*metav1.Time` with `omitempty`.
    fn time_ptr(self, key: &str, value: &Option<meta::Time>) -> Self {
        self.set_if(key, value.as_ref().map(time))
    }

    /// `metav1.MicroTime`: always printed, `null` when zero.
    fn micro(self, key: &str, value: &Option<meta::MicroTime>) -> Self {
        self.set(key, value.as_ref().map_or(Value::Null, micro_time))
    }

    /// `*metav1.MicroTime` with `omitempty`.
    fn micro_ptr(self, key: &str, value: &Option<meta::MicroTime>) -> Self {
        self.set_if(key, value.as_ref().map(micro_time))
    }

    /// `intstr.IntOrString` without `omitempty`.
    fn int_or_string_req(self, key: &str, value: &Option<IntOrString>) -> Self {
        self.set(key, with_default(value, int_or_string))
    }

    /// `*intstr.IntOrString` with `omitempty`.
    fn int_or_string_ptr(self, key: &str, value: &Option<IntOrString>) -> Self {
        self.set_if(key, value.as_ref().map(int_or_string))
    }
}

/// Applies `f` to the field's value, or to the zero value Go would hold for an absent field.
fn with_default<T: Default, R>(value: &Option<T>, f: impl FnOnce(&T) -> R) -> R {
    match value {
        Some(value) => f(value),
        None => f(&T::default()),
    }
}

fn quantity(q: &Quantity) -> Value {
    // An empty Quantity message decodes to the zero quantity, which prints as "0".
    Value::from(q.string.as_deref().unwrap_or("0"))
}

fn int_or_string(v: &IntOrString) -> Value {
    // intstr.Type: 0 is Int, 1 is String.
    if v.r#type == Some(1) {
        Value::from(v.str_val.as_deref().unwrap_or_default())
    } else {
        Value::from(v.int_val.unwrap_or_default())
    }
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Unix time of Go's zero `time.Time` (January 1, year 1, UTC).
const GO_ZERO_TIME_UNIX: i128 = -62_135_596_800;

/// `metav1.Time`: an empty message is the zero time (`null`); otherwise RFC 3339 in UTC with
/// whole seconds, the only precision Kubernetes keeps for it.
fn time(t: &meta::Time) -> Value {
    timestamp(t.seconds, t.nanos, false)
}

/// `metav1.MicroTime`: like `metav1.Time` but with six fractional digits.
fn micro_time(t: &meta::MicroTime) -> Value {
    timestamp(t.seconds, t.nanos, true)
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>, micros: bool) -> Value {
    if seconds.is_none() && nanos.is_none() {
        return Value::Null;
    }
    let total = i128::from(seconds.unwrap_or_default()) * NANOS_PER_SECOND
        + i128::from(nanos.unwrap_or_default());
    let secs = total.div_euclid(NANOS_PER_SECOND);
    let sub = total.rem_euclid(NANOS_PER_SECOND);
    if secs == GO_ZERO_TIME_UNIX && sub == 0 {
        return Value::Null;
    }
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    };
    let clock = format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    let fraction = if micros {
        // Go's formatting truncates to the requested precision.
        format!(".{:06}", sub / 1000)
    } else {
        String::new()
    };
    Value::from(format!("{year}-{month:02}-{day:02}T{clock}{fraction}Z"))
}

/// Proleptic Gregorian date of a day count relative to 1970-01-01.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

pub(crate) fn object_meta(m: &meta::ObjectMeta) -> Value {
    Obj::new()
        .str("name", &m.name)
        .str("generateName", &m.generate_name)
        .str("namespace", &m.namespace)
        .str("selfLink", &m.self_link)
        .str("uid", &m.uid)
        .str("resourceVersion", &m.resource_version)
        .int("generation", m.generation)
        .time("creationTimestamp", &m.creation_timestamp)
        .time_ptr("deletionTimestamp", &m.deletion_timestamp)
        .int_ptr(
            "deletionGracePeriodSeconds",
            m.deletion_grace_period_seconds,
        )
        .map("labels", &m.labels)
        .map("annotations", &m.annotations)
        .list("ownerReferences", &m.owner_references, owner_reference)
        .strs("finalizers", &m.finalizers)
        .done()
}

fn owner_reference(r: &meta::OwnerReference) -> Value {
    Obj::new()
        .str_req("apiVersion", &r.api_version)
        .str_req("kind", &r.kind)
        .str_req("name", &r.name)
        .str_req("uid", &r.uid)
        .bool_ptr("controller", r.controller)
        .bool_ptr("blockOwnerDeletion", r.block_owner_deletion)
        .done()
}

fn label_selector(s: &meta::LabelSelector) -> Value {
    Obj::new()
        .map("matchLabels", &s.match_labels)
        .list("matchExpressions", &s.match_expressions, |r| {
            Obj::new()
                .str_req("key", &r.key)
                .str_req("operator", &r.operator)
                .strs("values", &r.values)
                .done()
        })
        .done()
}

/// A `Namespace` message as JSON, after `head`.
pub fn namespace(head: Obj, ns: &core::Namespace) -> Value {
    head.obj("metadata", &ns.metadata, object_meta)
        .obj("spec", &ns.spec, |s| {
            Obj::new().strs("finalizers", &s.finalizers).done()
        })
        .obj("status", &ns.status, |s| {
            Obj::new()
                .str("phase", &s.phase)
                .list("conditions", &s.conditions, |c| {
                    Obj::new()
                        .str_req("type", &c.r#type)
                        .str_req("status", &c.status)
                        .time("lastTransitionTime", &c.last_transition_time)
                        .str("reason", &c.reason)
                        .str("message", &c.message)
                        .done()
                })
                .done()
        })
        .done()
}

/// A `Deployment` message as JSON, after `head`.
pub fn deployment(head: Obj, d: &apps::Deployment) -> Result<Value, DecodeError> {
    let spec = with_default(&d.spec, deployment_spec)?;
    Ok(head
        .obj("metadata", &d.metadata, object_meta)
        .set("spec", spec)
        .obj("status", &d.status, deployment_status)
        .done())
}

fn deployment_spec(s: &apps::DeploymentSpec) -> Result<Value, DecodeError> {
    let template = with_default(&s.template, pod_template_spec)?;
    Ok(Obj::new()
        .int_ptr("replicas", s.replicas)
        .opt_req("selector", &s.selector, label_selector)
        .set("template", template)
        .obj("strategy", &s.strategy, |st| {
            Obj::new()
                .str("type", &st.r#type)
                .opt("rollingUpdate", &st.rolling_update, |ru| {
                    Obj::new()
                        .int_or_string_ptr("maxUnavailable", &ru.max_unavailable)
                        .int_or_string_ptr("maxSurge", &ru.max_surge)
                        .done()
                })
                .done()
        })
        .int("minReadySeconds", s.min_ready_seconds)
        .int_ptr("revisionHistoryLimit", s.revision_history_limit)
        .bool("paused", s.paused)
        .int_ptr("progressDeadlineSeconds", s.progress_deadline_seconds)
        .done())
}

fn deployment_status(s: &apps::DeploymentStatus) -> Value {
    Obj::new()
        .int("observedGeneration", s.observed_generation)
        .int("replicas", s.replicas)
        .int("updatedReplicas", s.updated_replicas)
        .int("readyReplicas", s.ready_replicas)
        .int("availableReplicas", s.available_replicas)
        .int("unavailableReplicas", s.unavailable_replicas)
        .int_ptr("terminatingReplicas", s.terminating_replicas)
        .list("conditions", &s.conditions, |c| {
            Obj::new()
                .str_req("type", &c.r#type)
                .str_req("status", &c.status)
                .time("lastUpdateTime", &c.last_update_time)
                .time("lastTransitionTime", &c.last_transition_time)
                .str("reason", &c.reason)
                .str("message", &c.message)
                .done()
        })
        .int_ptr("collisionCount", s.collision_count)
        .done()
}

/// A `ReplicaSet` message as JSON, after `head`.
pub fn replica_set(head: Obj, rs: &apps::ReplicaSet) -> Result<Value, DecodeError> {
    let spec = with_default(&rs.spec, |s| -> Result<Value, DecodeError> {
        let template = with_default(&s.template, pod_template_spec)?;
        Ok(Obj::new()
            .int_ptr("replicas", s.replicas)
            .int("minReadySeconds", s.min_ready_seconds)
            .opt_req("selector", &s.selector, label_selector)
            .set("template", template)
            .done())
    })?;
    Ok(head
        .obj("metadata", &rs.metadata, object_meta)
        .set("spec", spec)
        .obj("status", &rs.status, |s| {
            Obj::new()
                .int_req("replicas", s.replicas)
                .int("fullyLabeledReplicas", s.fully_labeled_replicas)
                .int("readyReplicas", s.ready_replicas)
                .int("availableReplicas", s.available_replicas)
                .int_ptr("terminatingReplicas", s.terminating_replicas)
                .int("observedGeneration", s.observed_generation)
                .list("conditions", &s.conditions, |c| {
                    Obj::new()
                        .str_req("type", &c.r#type)
                        .str_req("status", &c.status)
                        .time("lastTransitionTime", &c.last_transition_time)
                        .str("reason", &c.reason)
                        .str("message", &c.message)
                        .done()
                })
                .done()
        })
        .done())
}

fn pod_template_spec(t: &core::PodTemplateSpec) -> Result<Value, DecodeError> {
    let spec = with_default(&t.spec, pod_spec)?;
    Ok(Obj::new()
        .obj("metadata", &t.metadata, object_meta)
        .set("spec", spec)
        .done())
}

/// A `Pod` message as JSON, after `head`.
pub fn pod(head: Obj, p: &core::Pod) -> Result<Value, DecodeError> {
    let spec = with_default(&p.spec, pod_spec)?;
    Ok(head
        .obj("metadata", &p.metadata, object_meta)
        .set("spec", spec)
        .obj("status", &p.status, pod_status)
        .done())
}

fn pod_spec(s: &core::PodSpec) -> Result<Value, DecodeError> {
    let volumes = s
        .volumes
        .iter()
        .map(volume)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Obj::new()
        .values("volumes", volumes)
        .list("initContainers", &s.init_containers, container)
        .list_req("containers", &s.containers, container)
        .str("restartPolicy", &s.restart_policy)
        .int_ptr(
            "terminationGracePeriodSeconds",
            s.termination_grace_period_seconds,
        )
        .int_ptr("activeDeadlineSeconds", s.active_deadline_seconds)
        .str("dnsPolicy", &s.dns_policy)
        .map("nodeSelector", &s.node_selector)
        .str("serviceAccountName", &s.service_account_name)
        .str("serviceAccount", &s.service_account)
        .bool_ptr(
            "automountServiceAccountToken",
            s.automount_service_account_token,
        )
        .str("nodeName", &s.node_name)
        .bool("hostNetwork", s.host_network)
        .bool("hostPID", s.host_pid)
        .bool("hostIPC", s.host_ipc)
        .bool_ptr("shareProcessNamespace", s.share_process_namespace)
        .opt("securityContext", &s.security_context, pod_security_context)
        .list(
            "imagePullSecrets",
            &s.image_pull_secrets,
            local_object_reference,
        )
        .str("hostname", &s.hostname)
        .str("subdomain", &s.subdomain)
        .opt("affinity", &s.affinity, affinity)
        .str("schedulerName", &s.scheduler_name)
        .list("tolerations", &s.tolerations, toleration)
        .list("hostAliases", &s.host_aliases, |h| {
            Obj::new()
                .str("ip", &h.ip)
                .strs("hostnames", &h.hostnames)
                .done()
        })
        .str("priorityClassName", &s.priority_class_name)
        .int_ptr("priority", s.priority)
        .opt("dnsConfig", &s.dns_config, |d| {
            Obj::new()
                .strs("nameservers", &d.nameservers)
                .strs("searches", &d.searches)
                .list("options", &d.options, |o| {
                    Obj::new()
                        .str("name", &o.name)
                        .str_ptr("value", &o.value)
                        .done()
                })
                .done()
        })
        .list("readinessGates", &s.readiness_gates, |g| {
            Obj::new()
                .str_req("conditionType", &g.condition_type)
                .done()
        })
        .str_ptr("runtimeClassName", &s.runtime_class_name)
        .bool_ptr("enableServiceLinks", s.enable_service_links)
        .str_ptr("preemptionPolicy", &s.preemption_policy)
        .quantities("overhead", &s.overhead)
        .list(
            "topologySpreadConstraints",
            &s.topology_spread_constraints,
            topology_spread_constraint,
        )
        .bool_ptr("setHostnameAsFQDN", s.set_hostname_as_fqdn)
        .opt("os", &s.os, |os| {
            Obj::new().str_req("name", &os.name).done()
        })
        .bool_ptr("hostUsers", s.host_users)
        .list("schedulingGates", &s.scheduling_gates, |g| {
            Obj::new().str_req("name", &g.name).done()
        })
        .opt("resources", &s.resources, resource_requirements)
        .done())
}

fn local_object_reference(r: &core::LocalObjectReference) -> Value {
    Obj::new().str("name", &r.name).done()
}

/// The `name` of an inlined `LocalObjectReference`.
fn inline_name(obj: Obj, r: &Option<core::LocalObjectReference>) -> Obj {
    match r {
        Some(r) => obj.str("name", &r.name),
        None => obj,
    }
}

fn container(c: &core::Container) -> Value {
    Obj::new()
        .str_req("name", &c.name)
        .str("image", &c.image)
        .strs("command", &c.command)
        .strs("args", &c.args)
        .str("workingDir", &c.working_dir)
        .list("ports", &c.ports, |p| {
            Obj::new()
                .str("name", &p.name)
                .int("hostPort", p.host_port)
                .int_req("containerPort", p.container_port)
                .str("protocol", &p.protocol)
                .str("hostIP", &p.host_ip)
                .done()
        })
        .list("envFrom", &c.env_from, env_from_source)
        .list("env", &c.env, env_var)
        .obj("resources", &c.resources, resource_requirements)
        .list("resizePolicy", &c.resize_policy, |p| {
            Obj::new()
                .str_req("resourceName", &p.resource_name)
                .str_req("restartPolicy", &p.restart_policy)
                .done()
        })
        .str_ptr("restartPolicy", &c.restart_policy)
        .list("volumeMounts", &c.volume_mounts, volume_mount)
        .list("volumeDevices", &c.volume_devices, |d| {
            Obj::new()
                .str_req("name", &d.name)
                .str_req("devicePath", &d.device_path)
                .done()
        })
        .opt("livenessProbe", &c.liveness_probe, probe)
        .opt("readinessProbe", &c.readiness_probe, probe)
        .opt("startupProbe", &c.startup_probe, probe)
        .opt("lifecycle", &c.lifecycle, lifecycle)
        .str("terminationMessagePath", &c.termination_message_path)
        .str("terminationMessagePolicy", &c.termination_message_policy)
        .str("imagePullPolicy", &c.image_pull_policy)
        .opt("securityContext", &c.security_context, security_context)
        .bool("stdin", c.stdin)
        .bool("stdinOnce", c.stdin_once)
        .bool("tty", c.tty)
        .done()
}

fn env_var(e: &core::EnvVar) -> Value {
    Obj::new()
        .str_req("name", &e.name)
        .str("value", &e.value)
        .opt("valueFrom", &e.value_from, |v| {
            Obj::new()
                .opt("fieldRef", &v.field_ref, object_field_selector)
                .opt(
                    "resourceFieldRef",
                    &v.resource_field_ref,
                    resource_field_selector,
                )
                .opt("configMapKeyRef", &v.config_map_key_ref, |k| {
                    inline_name(Obj::new(), &k.local_object_reference)
                        .str_req("key", &k.key)
                        .bool_ptr("optional", k.optional)
                        .done()
                })
                .opt("secretKeyRef", &v.secret_key_ref, |k| {
                    inline_name(Obj::new(), &k.local_object_reference)
                        .str_req("key", &k.key)
                        .bool_ptr("optional", k.optional)
                        .done()
                })
                .done()
        })
        .done()
}

fn object_field_selector(f: &core::ObjectFieldSelector) -> Value {
    Obj::new()
        .str("apiVersion", &f.api_version)
        .str_req("fieldPath", &f.field_path)
        .done()
}

fn resource_field_selector(f: &core::ResourceFieldSelector) -> Value {
    Obj::new()
        .str("containerName", &f.container_name)
        .str_req("resource", &f.resource)
        .set("divisor", with_default(&f.divisor, quantity))
        .done()
}

fn env_from_source(e: &core::EnvFromSource) -> Value {
    Obj::new()
        .str("prefix", &e.prefix)
        .opt("configMapRef", &e.config_map_ref, |r| {
            inline_name(Obj::new(), &r.local_object_reference)
                .bool_ptr("optional", r.optional)
                .done()
        })
        .opt("secretRef", &e.secret_ref, |r| {
            inline_name(Obj::new(), &r.local_object_reference)
                .bool_ptr("optional", r.optional)
                .done()
        })
        .done()
}

fn resource_requirements(r: &core::ResourceRequirements) -> Value {
    Obj::new()
        .quantities("limits", &r.limits)
        .quantities("requests", &r.requests)
        .list("claims", &r.claims, |c| {
            Obj::new()
                .str_req("name", &c.name)
                .str("request", &c.request)
                .done()
        })
        .done()
}

fn volume_mount(m: &core::VolumeMount) -> Value {
    Obj::new()
        .str_req("name", &m.name)
        .bool("readOnly", m.read_only)
        .str_ptr("recursiveReadOnly", &m.recursive_read_only)
        .str_req("mountPath", &m.mount_path)
        .str("subPath", &m.sub_path)
        .str_ptr("mountPropagation", &m.mount_propagation)
        .str("subPathExpr", &m.sub_path_expr)
        .done()
}

fn probe(p: &core::Probe) -> Value {
    // The Go ProbeHandler is an inlined struct: its fields sit directly in the probe object.
    let no_handler = core::ProbeHandler::default();
    let h = p.handler.as_ref().unwrap_or(&no_handler);
    Obj::new()
        .opt("exec", &h.exec, exec_action)
        .opt("httpGet", &h.http_get, http_get_action)
        .opt("tcpSocket", &h.tcp_socket, tcp_socket_action)
        .opt("grpc", &h.grpc, |g| {
            Obj::new()
                .int_req("port", g.port)
                .opt_req("service", &g.service, |s| Value::from(s.as_str()))
                .done()
        })
        .int("initialDelaySeconds", p.initial_delay_seconds)
        .int("timeoutSeconds", p.timeout_seconds)
        .int("periodSeconds", p.period_seconds)
        .int("successThreshold", p.success_threshold)
        .int("failureThreshold", p.failure_threshold)
        .int_ptr(
            "terminationGracePeriodSeconds",
            p.termination_grace_period_seconds,
        )
        .done()
}

fn exec_action(e: &core::ExecAction) -> Value {
    Obj::new().strs("command", &e.command).done()
}

fn http_get_action(h: &core::HttpGetAction) -> Value {
    Obj::new()
        .str("path", &h.path)
        .int_or_string_req("port", &h.port)
        .str("host", &h.host)
        .str("scheme", &h.scheme)
        .list("httpHeaders", &h.http_headers, |hd| {
            Obj::new()
                .str_req("name", &hd.name)
                .str_req("value", &hd.value)
                .done()
        })
        .done()
}

fn tcp_socket_action(t: &core::TcpSocketAction) -> Value {
    Obj::new()
        .int_or_string_req("port", &t.port)
        .str("host", &t.host)
        .done()
}

fn lifecycle(l: &core::Lifecycle) -> Value {
    let handler = |h: &core::LifecycleHandler| {
        Obj::new()
            .opt("exec", &h.exec, exec_action)
            .opt("httpGet", &h.http_get, http_get_action)
            .opt("tcpSocket", &h.tcp_socket, tcp_socket_action)
            .opt("sleep", &h.sleep, |s| {
                Obj::new().int_req("seconds", s.seconds).done()
            })
            .done()
    };
    Obj::new()
        .opt("postStart", &l.post_start, handler)
        .opt("preStop", &l.pre_stop, handler)
        .str_ptr("stopSignal", &l.stop_signal)
        .done()
}

fn se_linux_options(o: &core::SeLinuxOptions) -> Value {
    Obj::new()
        .str("user", &o.user)
        .str("role", &o.role)
        .str("type", &o.r#type)
        .str("level", &o.level)
        .done()
}

fn seccomp_profile(p: &core::SeccompProfile) -> Value {
    Obj::new()
        .str_req("type", &p.r#type)
        .str_ptr("localhostProfile", &p.localhost_profile)
        .done()
}

fn app_armor_profile(p: &core::AppArmorProfile) -> Value {
    Obj::new()
        .str_req("type", &p.r#type)
        .str_ptr("localhostProfile", &p.localhost_profile)
        .done()
}

fn security_context(s: &core::SecurityContext) -> Value {
    Obj::new()
        .opt("capabilities", &s.capabilities, |c| {
            Obj::new().strs("add", &c.add).strs("drop", &c.drop).done()
        })
        .bool_ptr("privileged", s.privileged)
        .opt("seLinuxOptions", &s.se_linux_options, se_linux_options)
        .int_ptr("runAsUser", s.run_as_user)
        .int_ptr("runAsGroup", s.run_as_group)
        .bool_ptr("runAsNonRoot", s.run_as_non_root)
        .bool_ptr("readOnlyRootFilesystem", s.read_only_root_filesystem)
        .bool_ptr("allowPrivilegeEscalation", s.allow_privilege_escalation)
        .str_ptr("procMount", &s.proc_mount)
        .opt("seccompProfile", &s.seccomp_profile, seccomp_profile)
        .opt("appArmorProfile", &s.app_armor_profile, app_armor_profile)
        .done()
}

fn pod_security_context(s: &core::PodSecurityContext) -> Value {
    Obj::new()
        .opt("seLinuxOptions", &s.se_linux_options, se_linux_options)
        .int_ptr("runAsUser", s.run_as_user)
        .int_ptr("runAsGroup", s.run_as_group)
        .bool_ptr("runAsNonRoot", s.run_as_non_root)
        .list("supplementalGroups", &s.supplemental_groups, |g| {
            Value::from(*g)
        })
        .str_ptr("supplementalGroupsPolicy", &s.supplemental_groups_policy)
        .int_ptr("fsGroup", s.fs_group)
        .list("sysctls", &s.sysctls, |c| {
            Obj::new()
                .str_req("name", &c.name)
                .str_req("value", &c.value)
                .done()
        })
        .str_ptr("fsGroupChangePolicy", &s.fs_group_change_policy)
        .opt("seccompProfile", &s.seccomp_profile, seccomp_profile)
        .opt("appArmorProfile", &s.app_armor_profile, app_armor_profile)
        .str_ptr("seLinuxChangePolicy", &s.se_linux_change_policy)
        .done()
}

fn toleration(t: &core::Toleration) -> Value {
    Obj::new()
        .str("key", &t.key)
        .str("operator", &t.operator)
        .str("value", &t.value)
        .str("effect", &t.effect)
        .int_ptr("tolerationSeconds", t.toleration_seconds)
        .done()
}

fn affinity(a: &core::Affinity) -> Value {
    let pod_affinity = |required: &[core::PodAffinityTerm],
                        preferred: &[core::WeightedPodAffinityTerm]| {
        Obj::new()
            .list(
                "requiredDuringSchedulingIgnoredDuringExecution",
                required,
                pod_affinity_term,
            )
            .list(
                "preferredDuringSchedulingIgnoredDuringExecution",
                preferred,
                |w| {
                    Obj::new()
                        .int_req("weight", w.weight)
                        .obj("podAffinityTerm", &w.pod_affinity_term, pod_affinity_term)
                        .done()
                },
            )
            .done()
    };
    Obj::new()
        .opt("nodeAffinity", &a.node_affinity, |n| {
            Obj::new()
                .opt(
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    &n.required_during_scheduling_ignored_during_execution,
                    |s| {
                        Obj::new()
                            .list_req(
                                "nodeSelectorTerms",
                                &s.node_selector_terms,
                                node_selector_term,
                            )
                            .done()
                    },
                )
                .list(
                    "preferredDuringSchedulingIgnoredDuringExecution",
                    &n.preferred_during_scheduling_ignored_during_execution,
                    |p| {
                        Obj::new()
                            .int_req("weight", p.weight)
                            .obj("preference", &p.preference, node_selector_term)
                            .done()
                    },
                )
                .done()
        })
        .opt("podAffinity", &a.pod_affinity, |p| {
            pod_affinity(
                &p.required_during_scheduling_ignored_during_execution,
                &p.preferred_during_scheduling_ignored_during_execution,
            )
        })
        .opt("podAntiAffinity", &a.pod_anti_affinity, |p| {
            pod_affinity(
                &p.required_during_scheduling_ignored_during_execution,
                &p.preferred_during_scheduling_ignored_during_execution,
            )
        })
        .done()
}

fn node_selector_term(t: &core::NodeSelectorTerm) -> Value {
    let requirement = |r: &core::NodeSelectorRequirement| {
        Obj::new()
            .str_req("key", &r.key)
            .str_req("operator", &r.operator)
            .strs("values", &r.values)
            .done()
    };
    Obj::new()
        .list("matchExpressions", &t.match_expressions, requirement)
        .list("matchFields", &t.match_fields, requirement)
        .done()
}

fn pod_affinity_term(t: &core::PodAffinityTerm) -> Value {
    Obj::new()
        .opt("labelSelector", &t.label_selector, label_selector)
        .strs("namespaces", &t.namespaces)
        .str_req("topologyKey", &t.topology_key)
        .opt("namespaceSelector", &t.namespace_selector, label_selector)
        .strs("matchLabelKeys", &t.match_label_keys)
        .strs("mismatchLabelKeys", &t.mismatch_label_keys)
        .done()
}

fn topology_spread_constraint(c: &core::TopologySpreadConstraint) -> Value {
    Obj::new()
        .int_req("maxSkew", c.max_skew)
        .str_req("topologyKey", &c.topology_key)
        .str_req("whenUnsatisfiable", &c.when_unsatisfiable)
        .opt("labelSelector", &c.label_selector, label_selector)
        .int_ptr("minDomains", c.min_domains)
        .str_ptr("nodeAffinityPolicy", &c.node_affinity_policy)
        .str_ptr("nodeTaintsPolicy", &c.node_taints_policy)
        .strs("matchLabelKeys", &c.match_label_keys)
        .done()
}

fn volume(v: &core::Volume) -> Result<Value, DecodeError> {
    let obj = Obj::new().str_req("name", &v.name);
    let Some(src) = &v.volume_source else {
        return Ok(obj.done());
    };
    let mut rest = src.clone();
    rest.host_path = None;
    rest.empty_dir = None;
    rest.secret = None;
    rest.config_map = None;
    rest.persistent_volume_claim = None;
    rest.downward_api = None;
    rest.projected = None;
    if rest != core::VolumeSource::default()
        || src
            .projected
            .as_ref()
            .is_some_and(|p| p.sources.iter().any(|s| s.pod_certificate.is_some()))
    {
        return Err(DecodeError::UnsupportedField(format!(
            "volume {:?}: volume source",
            v.name.as_deref().unwrap_or_default()
        )));
    }
    Ok(obj
        .opt("hostPath", &src.host_path, |h| {
            Obj::new()
                .str_req("path", &h.path)
                .str_ptr("type", &h.r#type)
                .done()
        })
        .opt("emptyDir", &src.empty_dir, |e| {
            Obj::new()
                .str("medium", &e.medium)
                .opt("sizeLimit", &e.size_limit, quantity)
                .done()
        })
        .opt("secret", &src.secret, |s| {
            Obj::new()
                .str("secretName", &s.secret_name)
                .list("items", &s.items, key_to_path)
                .int_ptr("defaultMode", s.default_mode)
                .bool_ptr("optional", s.optional)
                .done()
        })
        .opt("persistentVolumeClaim", &src.persistent_volume_claim, |p| {
            Obj::new()
                .str_req("claimName", &p.claim_name)
                .bool("readOnly", p.read_only)
                .done()
        })
        .opt("downwardAPI", &src.downward_api, |d| {
            Obj::new()
                .list("items", &d.items, downward_api_file)
                .int_ptr("defaultMode", d.default_mode)
                .done()
        })
        .opt("configMap", &src.config_map, |c| {
            inline_name(Obj::new(), &c.local_object_reference)
                .list("items", &c.items, key_to_path)
                .int_ptr("defaultMode", c.default_mode)
                .bool_ptr("optional", c.optional)
                .done()
        })
        .opt("projected", &src.projected, |p| {
            Obj::new()
                .list_req("sources", &p.sources, volume_projection)
                .int_ptr("defaultMode", p.default_mode)
                .done()
        })
        .done())
}

fn key_to_path(k: &core::KeyToPath) -> Value {
    Obj::new()
        .str_req("key", &k.key)
        .str_req("path", &k.path)
        .int_ptr("mode", k.mode)
        .done()
}

fn downward_api_file(f: &core::DownwardAPIVolumeFile) -> Value {
    Obj::new()
        .str_req("path", &f.path)
        .opt("fieldRef", &f.field_ref, object_field_selector)
        .opt(
            "resourceFieldRef",
            &f.resource_field_ref,
            resource_field_selector,
        )
        .int_ptr("mode", f.mode)
        .done()
}

fn volume_projection(p: &core::VolumeProjection) -> Value {
    Obj::new()
        .opt("secret", &p.secret, |s| {
            inline_name(Obj::new(), &s.local_object_reference)
                .list("items", &s.items, key_to_path)
                .bool_ptr("optional", s.optional)
                .done()
        })
        .opt("downwardAPI", &p.downward_api, |d| {
            Obj::new().list("items", &d.items, downward_api_file).done()
        })
        .opt("configMap", &p.config_map, |c| {
            inline_name(Obj::new(), &c.local_object_reference)
                .list("items", &c.items, key_to_path)
                .bool_ptr("optional", c.optional)
                .done()
        })
        .opt("serviceAccountToken", &p.service_account_token, |t| {
            Obj::new()
                .str("audience", &t.audience)
                .int_ptr("expirationSeconds", t.expiration_seconds)
                .str_req("path", &t.path)
                .done()
        })
        .opt("clusterTrustBundle", &p.cluster_trust_bundle, |b| {
            Obj::new()
                .str_ptr("name", &b.name)
                .str_ptr("signerName", &b.signer_name)
                .opt("labelSelector", &b.label_selector, label_selector)
                .bool_ptr("optional", b.optional)
                .str_req("path", &b.path)
                .done()
        })
        .done()
}

fn pod_status(s: &core::PodStatus) -> Value {
    Obj::new()
        .int("observedGeneration", s.observed_generation)
        .str("phase", &s.phase)
        .list("conditions", &s.conditions, |c| {
            Obj::new()
                .str_req("type", &c.r#type)
                .int("observedGeneration", c.observed_generation)
                .str_req("status", &c.status)
                .time("lastProbeTime", &c.last_probe_time)
                .time("lastTransitionTime", &c.last_transition_time)
                .str("reason", &c.reason)
                .str("message", &c.message)
                .done()
        })
        .str("message", &s.message)
        .str("reason", &s.reason)
        .str("nominatedNodeName", &s.nominated_node_name)
        .str("hostIP", &s.host_ip)
        .list("hostIPs", &s.host_ips, |ip| {
            Obj::new().str("ip", &ip.ip).done()
        })
        .str("podIP", &s.pod_ip)
        .list("podIPs", &s.pod_ips, |ip| {
            Obj::new().str("ip", &ip.ip).done()
        })
        .time_ptr("startTime", &s.start_time)
        .list(
            "initContainerStatuses",
            &s.init_container_statuses,
            container_status,
        )
        .list("containerStatuses", &s.container_statuses, container_status)
        .str("qosClass", &s.qos_class)
        .list(
            "ephemeralContainerStatuses",
            &s.ephemeral_container_statuses,
            container_status,
        )
        .str("resize", &s.resize)
        .done()
}

fn container_status(s: &core::ContainerStatus) -> Value {
    Obj::new()
        .str_req("name", &s.name)
        .obj("state", &s.state, container_state)
        .obj("lastState", &s.last_state, container_state)
        .bool_req("ready", s.ready)
        .int_req("restartCount", s.restart_count)
        .str_req("image", &s.image)
        .str_req("imageID", &s.image_id)
        .str("containerID", &s.container_id)
        .bool_ptr("started", s.started)
        .quantities("allocatedResources", &s.allocated_resources)
        .opt("resources", &s.resources, resource_requirements)
        .list("volumeMounts", &s.volume_mounts, |m| {
            Obj::new()
                .str_req("name", &m.name)
                .str_req("mountPath", &m.mount_path)
                .bool("readOnly", m.read_only)
                .str_ptr("recursiveReadOnly", &m.recursive_read_only)
                .done()
        })
        .opt("user", &s.user, |u| {
            Obj::new()
                .opt("linux", &u.linux, |l| {
                    Obj::new()
                        .int_req("uid", l.uid)
                        .int_req("gid", l.gid)
                        .list("supplementalGroups", &l.supplemental_groups, |g| {
                            Value::from(*g)
                        })
                        .done()
                })
                .done()
        })
        .str_ptr("stopSignal", &s.stop_signal)
        .done()
}

fn container_state(s: &core::ContainerState) -> Value {
    Obj::new()
        .opt("waiting", &s.waiting, |w| {
            Obj::new()
                .str("reason", &w.reason)
                .str("message", &w.message)
                .done()
        })
        .opt("running", &s.running, |r| {
            Obj::new().time("startedAt", &r.started_at).done()
        })
        .opt("terminated", &s.terminated, |t| {
            Obj::new()
                .int_req("exitCode", t.exit_code)
                .int("signal", t.signal)
                .str("reason", &t.reason)
                .str("message", &t.message)
                .time("startedAt", &t.started_at)
                .time("finishedAt", &t.finished_at)
                .str("containerID", &t.container_id)
                .done()
        })
        .done()
}

/// A `Node` message as JSON, after `head`.
pub fn node(head: Obj, n: &core::Node) -> Value {
    head.obj("metadata", &n.metadata, object_meta)
        .obj("spec", &n.spec, |s| {
            Obj::new()
                .str("podCIDR", &s.pod_cidr)
                .strs("podCIDRs", &s.pod_cid_rs)
                .str("providerID", &s.provider_id)
                .bool("unschedulable", s.unschedulable)
                .list("taints", &s.taints, |t| {
                    Obj::new()
                        .str_req("key", &t.key)
                        .str("value", &t.value)
                        .str_req("effect", &t.effect)
                        .time_ptr("timeAdded", &t.time_added)
                        .done()
                })
                .str("externalID", &s.external_id)
                .done()
        })
        .obj("status", &n.status, node_status)
        .done()
}

fn node_status(s: &core::NodeStatus) -> Value {
    Obj::new()
        .quantities("capacity", &s.capacity)
        .quantities("allocatable", &s.allocatable)
        .str("phase", &s.phase)
        .list("conditions", &s.conditions, |c| {
            Obj::new()
                .str_req("type", &c.r#type)
                .str_req("status", &c.status)
                .time("lastHeartbeatTime", &c.last_heartbeat_time)
                .time("lastTransitionTime", &c.last_transition_time)
                .str("reason", &c.reason)
                .str("message", &c.message)
                .done()
        })
        .list("addresses", &s.addresses, |a| {
            Obj::new()
                .str_req("type", &a.r#type)
                .str_req("address", &a.address)
                .done()
        })
        .obj("daemonEndpoints", &s.daemon_endpoints, |d| {
            Obj::new()
                .obj("kubeletEndpoint", &d.kubelet_endpoint, |e| {
                    // Kubernetes keeps the capitalised key for backward compatibility.
                    Obj::new().int_req("Port", e.port).done()
                })
                .done()
        })
        .obj("nodeInfo", &s.node_info, |i| {
            Obj::new()
                .str_req("machineID", &i.machine_id)
                .str_req("systemUUID", &i.system_uuid)
                .str_req("bootID", &i.boot_id)
                .str_req("kernelVersion", &i.kernel_version)
                .str_req("osImage", &i.os_image)
                .str_req("containerRuntimeVersion", &i.container_runtime_version)
                .str_req("kubeletVersion", &i.kubelet_version)
                .str_req("kubeProxyVersion", &i.kube_proxy_version)
                .str_req("operatingSystem", &i.operating_system)
                .str_req("architecture", &i.architecture)
                .opt("swap", &i.swap, |sw| {
                    Obj::new().int_ptr("capacity", sw.capacity).done()
                })
                .done()
        })
        .list("images", &s.images, |i| {
            Obj::new()
                .strs_req("names", &i.names)
                .int("sizeBytes", i.size_bytes)
                .done()
        })
        .strs("volumesInUse", &s.volumes_in_use)
        .list("volumesAttached", &s.volumes_attached, |v| {
            Obj::new()
                .str_req("name", &v.name)
                .str_req("devicePath", &v.device_path)
                .done()
        })
        .list("runtimeHandlers", &s.runtime_handlers, |h| {
            Obj::new()
                .str_req("name", &h.name)
                .opt("features", &h.features, |f| {
                    Obj::new()
                        .bool_ptr("recursiveReadOnlyMounts", f.recursive_read_only_mounts)
                        .bool_ptr("userNamespaces", f.user_namespaces)
                        .done()
                })
                .done()
        })
        .opt("features", &s.features, |f| {
            Obj::new()
                .bool_ptr("supplementalGroupsPolicy", f.supplemental_groups_policy)
                .done()
        })
        .done()
}

fn object_reference(r: &core::ObjectReference) -> Value {
    Obj::new()
        .str("kind", &r.kind)
        .str("namespace", &r.namespace)
        .str("name", &r.name)
        .str("uid", &r.uid)
        .str("apiVersion", &r.api_version)
        .str("resourceVersion", &r.resource_version)
        .str("fieldPath", &r.field_path)
        .done()
}

/// An `Event` message as JSON, after `head`.
pub fn event(head: Obj, e: &core::Event) -> Value {
    head.obj("metadata", &e.metadata, object_meta)
        .obj("involvedObject", &e.involved_object, object_reference)
        .str("reason", &e.reason)
        .str("message", &e.message)
        .obj("source", &e.source, |s| {
            Obj::new()
                .str("component", &s.component)
                .str("host", &s.host)
                .done()
        })
        .time("firstTimestamp", &e.first_timestamp)
        .time("lastTimestamp", &e.last_timestamp)
        .int("count", e.count)
        .str("type", &e.r#type)
        .micro("eventTime", &e.event_time)
        .opt("series", &e.series, |s| {
            Obj::new()
                .int("count", s.count)
                .micro("lastObservedTime", &s.last_observed_time)
                .done()
        })
        .str("action", &e.action)
        .opt("related", &e.related, object_reference)
        .str_req("reportingComponent", &e.reporting_component)
        .str_req("reportingInstance", &e.reporting_instance)
        .done()
}

/// A `Lease` message as JSON, after `head`.
pub fn lease(head: Obj, l: &coordination::Lease) -> Value {
    head.obj("metadata", &l.metadata, object_meta)
        .obj("spec", &l.spec, |s| {
            Obj::new()
                .str_ptr("holderIdentity", &s.holder_identity)
                .int_ptr("leaseDurationSeconds", s.lease_duration_seconds)
                .micro_ptr("acquireTime", &s.acquire_time)
                .micro_ptr("renewTime", &s.renew_time)
                .int_ptr("leaseTransitions", s.lease_transitions)
                .str_ptr("strategy", &s.strategy)
                .str_ptr("preferredHolder", &s.preferred_holder)
                .done()
        })
        .done()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
    use serde_json::json;

    /// `kubectl create namespace pbtest`
    const BODY1: &[u8] = include_bytes!("testdata/body1.bin");
    /// `kubectl create deployment nginx --image=nginx:1.25 --replicas=2 --port=80`
    const BODY2: &[u8] = include_bytes!("testdata/body2.bin");
    /// `kubectl create deployment multi --image=busybox:1.36 --image=nginx`
    const BODY3: &[u8] = include_bytes!("testdata/body3.bin");
    /// `kubectl create deployment cmd --image=busybox -- sleep 100`
    const BODY4: &[u8] = include_bytes!("testdata/body4.bin");

    /// Decodes a body sent for `kind` the way the apiserver does: through the kind's
    /// strategy, which only the served kinds have.
    fn decode(kind: &str, body: &[u8]) -> Result<Value, DecodeError> {
        match crate::kinds::by_kind(kind) {
            Some(k) => k.decode_protobuf(body),
            None => Err(DecodeError::UnsupportedKind(kind.to_owned())),
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.to_owned()),
                kind: Some(kind.to_owned()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn t(seconds: i64) -> Option<meta::Time> {
        Some(meta::Time {
            seconds: Some(seconds),
            nanos: Some(0),
        })
    }

    /// What a Go client sends for a zero `metav1.Time`: a present, empty message.
    fn zero_time() -> Option<meta::Time> {
        Some(meta::Time::default())
    }

    fn q(v: &str) -> Quantity {
        Quantity { string: s(v) }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // Expected values below are the output of
    // `kubectl.1.32 create ... --dry-run=client -o json` for the same commands.

    #[test]
    fn kubectl_create_namespace() {
        let expected = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "pbtest", "creationTimestamp": null},
            "spec": {},
            "status": {}
        });
        assert_eq!(decode("Namespace", BODY1).unwrap(), expected);
    }

    #[test]
    fn kubectl_create_deployment_with_replicas_and_port() {
        let expected = json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "nginx",
                "creationTimestamp": null,
                "labels": {"app": "nginx"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80}],
                            "resources": {}
                        }]
                    }
                },
                "strategy": {}
            },
            "status": {}
        });
        assert_eq!(decode("Deployment", BODY2).unwrap(), expected);
    }

    #[test]
    fn kubectl_create_deployment_with_two_images() {
        let expected = json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "multi",
                "creationTimestamp": null,
                "labels": {"app": "multi"}
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "multi"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "multi"}},
                    "spec": {
                        "containers": [
                            {"name": "busybox", "image": "busybox:1.36", "resources": {}},
                            {"name": "nginx", "image": "nginx", "resources": {}}
                        ]
                    }
                },
                "strategy": {}
            },
            "status": {}
        });
        assert_eq!(decode("Deployment", BODY3).unwrap(), expected);
    }

    #[test]
    fn kubectl_create_deployment_with_command() {
        let expected = json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "cmd",
                "creationTimestamp": null,
                "labels": {"app": "cmd"}
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "cmd"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "cmd"}},
                    "spec": {
                        "containers": [{
                            "name": "busybox",
                            "image": "busybox",
                            "command": ["sleep", "100"],
                            "resources": {}
                        }]
                    }
                },
                "strategy": {}
            },
            "status": {}
        });
        assert_eq!(decode("Deployment", BODY4).unwrap(), expected);
    }

    fn sample_container() -> core::Container {
        core::Container {
            name: s("app"),
            image: s("nginx:1.25"),
            command: vec!["/bin/sh".to_owned()],
            args: vec!["-c".to_owned(), "run".to_owned()],
            working_dir: s("/srv"),
            ports: vec![core::ContainerPort {
                name: s("http"),
                host_port: Some(0),
                container_port: Some(8080),
                protocol: s("TCP"),
                host_ip: s(""),
            }],
            env: vec![
                core::EnvVar {
                    name: s("MODE"),
                    value: s("prod"),
                    value_from: None,
                },
                core::EnvVar {
                    name: s("POD_NAME"),
                    value: s(""),
                    value_from: Some(core::EnvVarSource {
                        field_ref: Some(core::ObjectFieldSelector {
                            api_version: s("v1"),
                            field_path: s("metadata.name"),
                        }),
                        ..Default::default()
                    }),
                },
                core::EnvVar {
                    name: s("CPU_LIMIT"),
                    value: None,
                    value_from: Some(core::EnvVarSource {
                        resource_field_ref: Some(core::ResourceFieldSelector {
                            container_name: s(""),
                            resource: s("limits.cpu"),
                            divisor: None,
                        }),
                        ..Default::default()
                    }),
                },
            ],
            resources: Some(core::ResourceRequirements {
                limits: [
                    ("cpu".to_owned(), q("500m")),
                    ("memory".to_owned(), q("128Mi")),
                ]
                .into_iter()
                .collect(),
                requests: [("cpu".to_owned(), q("250m"))].into_iter().collect(),
                claims: vec![],
            }),
            volume_mounts: vec![core::VolumeMount {
                name: s("data"),
                read_only: Some(true),
                mount_path: s("/data"),
                sub_path: s(""),
                ..Default::default()
            }],
            liveness_probe: Some(core::Probe {
                handler: Some(core::ProbeHandler {
                    http_get: Some(core::HttpGetAction {
                        path: s("/healthz"),
                        port: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: s("http"),
                        }),
                        host: s(""),
                        scheme: s("HTTP"),
                        http_headers: vec![],
                    }),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(0),
                timeout_seconds: Some(1),
                period_seconds: Some(10),
                success_threshold: Some(1),
                failure_threshold: Some(3),
                termination_grace_period_seconds: None,
            }),
            termination_message_path: s("/dev/termination-log"),
            termination_message_policy: s("File"),
            image_pull_policy: s("IfNotPresent"),
            security_context: Some(core::SecurityContext {
                allow_privilege_escalation: Some(false),
                run_as_user: Some(0),
                capabilities: Some(core::Capabilities {
                    add: vec![],
                    drop: vec!["ALL".to_owned()],
                }),
                ..Default::default()
            }),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn sample_pod() -> core::Pod {
        core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: s("web-1"),
                generate_name: s(""),
                namespace: s("default"),
                uid: s("0b5c6a2e-1111-2222-3333-444455556666"),
                resource_version: s(""),
                generation: Some(0),
                creation_timestamp: t(1_714_566_896),
                deletion_timestamp: t(951_868_799),
                deletion_grace_period_seconds: Some(0),
                labels: labels(&[("app", "web")]),
                annotations: labels(&[("note", "x")]),
                owner_references: vec![meta::OwnerReference {
                    api_version: s("apps/v1"),
                    kind: s("ReplicaSet"),
                    name: s("web"),
                    uid: s("rs-uid"),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                finalizers: vec!["example.com/keep".to_owned()],
                managed_fields: vec![meta::ManagedFieldsEntry {
                    manager: s("kubectl"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                volumes: vec![
                    core::Volume {
                        name: s("data"),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource {
                                medium: s(""),
                                size_limit: Some(q("1Gi")),
                            }),
                            ..Default::default()
                        }),
                    },
                    core::Volume {
                        name: s("host"),
                        volume_source: Some(core::VolumeSource {
                            host_path: Some(core::HostPathVolumeSource {
                                path: s("/var/log"),
                                r#type: s(""),
                            }),
                            ..Default::default()
                        }),
                    },
                    core::Volume {
                        name: s("cfg"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("settings"),
                                }),
                                items: vec![core::KeyToPath {
                                    key: s("a"),
                                    path: s("a.conf"),
                                    mode: None,
                                }],
                                default_mode: Some(420),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                    },
                    core::Volume {
                        name: s("creds"),
                        volume_source: Some(core::VolumeSource {
                            secret: Some(core::SecretVolumeSource {
                                secret_name: s("creds"),
                                items: vec![],
                                default_mode: Some(256),
                                optional: Some(false),
                            }),
                            ..Default::default()
                        }),
                    },
                ],
                init_containers: vec![core::Container {
                    name: s("init"),
                    image: s("busybox"),
                    resources: Some(core::ResourceRequirements::default()),
                    ..Default::default()
                }],
                containers: vec![sample_container()],
                restart_policy: s("Always"),
                termination_grace_period_seconds: Some(30),
                active_deadline_seconds: None,
                dns_policy: s("ClusterFirst"),
                node_selector: labels(&[("disk", "ssd")]),
                service_account_name: s("default"),
                service_account: s(""),
                node_name: s("node-a"),
                host_network: Some(false),
                host_pid: Some(false),
                host_ipc: Some(false),
                security_context: Some(core::PodSecurityContext::default()),
                hostname: s(""),
                subdomain: s(""),
                scheduler_name: s("default-scheduler"),
                tolerations: vec![core::Toleration {
                    key: s("node.kubernetes.io/not-ready"),
                    operator: s("Exists"),
                    value: s(""),
                    effect: s("NoExecute"),
                    toleration_seconds: Some(300),
                }],
                priority_class_name: s(""),
                priority: Some(0),
                enable_service_links: Some(true),
                preemption_policy: s("PreemptLowerPriority"),
                ..Default::default()
            }),
            status: Some(core::PodStatus {
                phase: s("Running"),
                conditions: vec![core::PodCondition {
                    r#type: s("Ready"),
                    status: s("True"),
                    last_probe_time: zero_time(),
                    last_transition_time: t(1_714_566_896),
                    reason: s(""),
                    message: s(""),
                    observed_generation: None,
                }],
                message: s(""),
                reason: s(""),
                host_ip: s("10.0.0.5"),
                host_ips: vec![core::HostIp { ip: s("10.0.0.5") }],
                pod_ip: s("10.244.0.7"),
                pod_ips: vec![core::PodIp {
                    ip: s("10.244.0.7"),
                }],
                start_time: t(1_714_566_896),
                container_statuses: vec![core::ContainerStatus {
                    name: s("app"),
                    state: Some(core::ContainerState {
                        running: Some(core::ContainerStateRunning {
                            started_at: t(1_714_566_896),
                        }),
                        ..Default::default()
                    }),
                    last_state: Some(core::ContainerState::default()),
                    ready: Some(true),
                    restart_count: Some(0),
                    image: s("docker.io/library/nginx:1.25"),
                    image_id: s(""),
                    container_id: s("containerd://abc"),
                    started: Some(true),
                    ..Default::default()
                }],
                qos_class: s("Burstable"),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn pod_round_trip() {
        let body = envelope("v1", "Pod", sample_pod().encode_to_vec());
        let expected = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "web-1",
                "namespace": "default",
                "uid": "0b5c6a2e-1111-2222-3333-444455556666",
                "creationTimestamp": "2024-05-01T12:34:56Z",
                "deletionTimestamp": "2000-02-29T23:59:59Z",
                "deletionGracePeriodSeconds": 0,
                "labels": {"app": "web"},
                "annotations": {"note": "x"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web",
                    "uid": "rs-uid",
                    "controller": true,
                    "blockOwnerDeletion": true
                }],
                "finalizers": ["example.com/keep"]
            },
            "spec": {
                "volumes": [
                    {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
                    {"name": "cfg", "configMap": {
                        "name": "settings",
                        "items": [{"key": "a", "path": "a.conf"}],
                        "defaultMode": 420
                    }},
                    {"name": "creds", "secret": {
                        "secretName": "creds",
                        "defaultMode": 256,
                        "optional": false
                    }}
                ],
                "initContainers": [{"name": "init", "image": "busybox", "resources": {}}],
                "containers": [{
                    "name": "app",
                    "image": "nginx:1.25",
                    "command": ["/bin/sh"],
                    "args": ["-c", "run"],
                    "workingDir": "/srv",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "prod"},
                        {"name": "POD_NAME", "valueFrom": {
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                        }},
                        {"name": "CPU_LIMIT", "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}
                        }}
                    ],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                        "requests": {"cpu": "250m"}
                    },
                    "volumeMounts": [{"name": "data", "readOnly": true, "mountPath": "/data"}],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "timeoutSeconds": 1,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 0,
                        "allowPrivilegeEscalation": false
                    }
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"disk": "ssd"},
                "serviceAccountName": "default",
                "nodeName": "node-a",
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "tolerations": [{
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300
                }],
                "priority": 0,
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority"
            },
            "status": {
                "phase": "Running",
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "lastProbeTime": null,
                    "lastTransitionTime": "2024-05-01T12:34:56Z"
                }],
                "hostIP": "10.0.0.5",
                "hostIPs": [{"ip": "10.0.0.5"}],
                "podIP": "10.244.0.7",
                "podIPs": [{"ip": "10.244.0.7"}],
                "startTime": "2024-05-01T12:34:56Z",
                "containerStatuses": [{
                    "name": "app",
                    "state": {"running": {"startedAt": "2024-05-01T12:34:56Z"}},
                    "lastState": {},
                    "ready": true,
                    "restartCount": 0,
                    "image": "docker.io/library/nginx:1.25",
                    "imageID": "",
                    "containerID": "containerd://abc",
                    "started": true
                }],
                "qosClass": "Burstable"
            }
        });
        assert_eq!(decode("Pod", &body).unwrap(), expected);
    }

    #[test]
    fn node_round_trip() {
        let n = core::Node {
            metadata: Some(meta::ObjectMeta {
                name: s("node-a"),
                labels: labels(&[("kubernetes.io/hostname", "node-a")]),
                ..Default::default()
            }),
            spec: Some(core::NodeSpec {
                pod_cidr: s("10.244.0.0/24"),
                pod_cid_rs: vec!["10.244.0.0/24".to_owned()],
                provider_id: s(""),
                unschedulable: Some(true),
                taints: vec![core::Taint {
                    key: s("node.kubernetes.io/unschedulable"),
                    value: s(""),
                    effect: s("NoSchedule"),
                    time_added: t(1_714_566_896),
                }],
                external_id: s(""),
                ..Default::default()
            }),
            status: Some(core::NodeStatus {
                capacity: [("cpu".to_owned(), q("4")), ("pods".to_owned(), q("110"))]
                    .into_iter()
                    .collect(),
                allocatable: [("cpu".to_owned(), q("3800m"))].into_iter().collect(),
                phase: s(""),
                conditions: vec![core::NodeCondition {
                    r#type: s("Ready"),
                    status: s("True"),
                    last_heartbeat_time: t(1_714_566_896),
                    last_transition_time: t(-14_182_940),
                    reason: s("KubeletReady"),
                    message: s("kubelet is posting ready status"),
                }],
                addresses: vec![
                    core::NodeAddress {
                        r#type: s("InternalIP"),
                        address: s("10.0.0.5"),
                    },
                    core::NodeAddress {
                        r#type: s("Hostname"),
                        address: s("node-a"),
                    },
                ],
                daemon_endpoints: Some(core::NodeDaemonEndpoints {
                    kubelet_endpoint: Some(core::DaemonEndpoint { port: Some(10250) }),
                }),
                node_info: Some(core::NodeSystemInfo {
                    machine_id: s("m"),
                    kubelet_version: s("v1.32.0"),
                    operating_system: s("linux"),
                    architecture: s("amd64"),
                    ..Default::default()
                }),
                images: vec![
                    core::ContainerImage {
                        names: vec!["nginx:1.25".to_owned()],
                        size_bytes: Some(1000),
                    },
                    core::ContainerImage {
                        names: vec![],
                        size_bytes: Some(0),
                    },
                ],
                ..Default::default()
            }),
        };
        let body = envelope("v1", "Node", n.encode_to_vec());
        let expected = json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": "node-a",
                "creationTimestamp": null,
                "labels": {"kubernetes.io/hostname": "node-a"}
            },
            "spec": {
                "podCIDR": "10.244.0.0/24",
                "podCIDRs": ["10.244.0.0/24"],
                "unschedulable": true,
                "taints": [{
                    "key": "node.kubernetes.io/unschedulable",
                    "effect": "NoSchedule",
                    "timeAdded": "2024-05-01T12:34:56Z"
                }]
            },
            "status": {
                "capacity": {"cpu": "4", "pods": "110"},
                "allocatable": {"cpu": "3800m"},
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": "2024-05-01T12:34:56Z",
                    "lastTransitionTime": "1969-07-20T20:17:40Z",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status"
                }],
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.5"},
                    {"type": "Hostname", "address": "node-a"}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "m",
                    "systemUUID": "",
                    "bootID": "",
                    "kernelVersion": "",
                    "osImage": "",
                    "containerRuntimeVersion": "",
                    "kubeletVersion": "v1.32.0",
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64"
                },
                "images": [
                    {"names": ["nginx:1.25"], "sizeBytes": 1000},
                    {"names": null}
                ]
            }
        });
        assert_eq!(decode("Node", &body).unwrap(), expected);
    }

    #[test]
    fn node_with_empty_status_prints_go_zero_structs() {
        let n = core::Node {
            metadata: Some(meta::ObjectMeta {
                name: s("bare"),
                ..Default::default()
            }),
            spec: None,
            status: None,
        };
        let body = envelope("v1", "Node", n.encode_to_vec());
        let value = decode("Node", &body).unwrap();
        assert_eq!(value["spec"], json!({}));
        assert_eq!(
            value["status"],
            json!({
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kernelVersion": "",
                    "osImage": "",
                    "containerRuntimeVersion": "",
                    "kubeletVersion": "",
                    "kubeProxyVersion": "",
                    "operatingSystem": "",
                    "architecture": ""
                }
            })
        );
    }

    #[test]
    fn event_round_trip() {
        let e = core::Event {
            metadata: Some(meta::ObjectMeta {
                name: s("web-1.17c"),
                namespace: s("default"),
                ..Default::default()
            }),
            involved_object: Some(core::ObjectReference {
                kind: s("Pod"),
                namespace: s("default"),
                name: s("web-1"),
                uid: s("pod-uid"),
                api_version: s("v1"),
                resource_version: s("42"),
                field_path: s("spec.containers{app}"),
            }),
            reason: s("Pulled"),
            message: s("Container image already present"),
            source: Some(core::EventSource {
                component: s("kubelet"),
                host: s("node-a"),
            }),
            first_timestamp: t(1_714_566_896),
            last_timestamp: t(1_714_566_896),
            count: Some(1),
            r#type: s("Normal"),
            event_time: Some(meta::MicroTime::default()),
            series: None,
            action: s(""),
            related: None,
            reporting_component: s("kubelet"),
            reporting_instance: s("node-a"),
        };
        let body = envelope("v1", "Event", e.encode_to_vec());
        let expected = json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": "web-1.17c",
                "namespace": "default",
                "creationTimestamp": null
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": "default",
                "name": "web-1",
                "uid": "pod-uid",
                "apiVersion": "v1",
                "resourceVersion": "42",
                "fieldPath": "spec.containers{app}"
            },
            "reason": "Pulled",
            "message": "Container image already present",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2024-05-01T12:34:56Z",
            "lastTimestamp": "2024-05-01T12:34:56Z",
            "count": 1,
            "type": "Normal",
            "eventTime": null,
            "reportingComponent": "kubelet",
            "reportingInstance": "node-a"
        });
        assert_eq!(decode("Event", &body).unwrap(), expected);
    }

    #[test]
    fn event_without_optional_fields_keeps_required_ones() {
        let e = core::Event {
            metadata: Some(meta::ObjectMeta {
                name: s("e"),
                ..Default::default()
            }),
            series: Some(core::EventSeries {
                count: Some(2),
                last_observed_time: Some(meta::MicroTime {
                    seconds: Some(1_714_566_896),
                    nanos: Some(5_000),
                }),
            }),
            ..Default::default()
        };
        let body = envelope("v1", "Event", e.encode_to_vec());
        let expected = json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": "e", "creationTimestamp": null},
            "involvedObject": {},
            "source": {},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "eventTime": null,
            "series": {"count": 2, "lastObservedTime": "2024-05-01T12:34:56.000005Z"},
            "reportingComponent": "",
            "reportingInstance": ""
        });
        assert_eq!(decode("Event", &body).unwrap(), expected);
    }

    #[test]
    fn lease_round_trip() {
        let l = coordination::Lease {
            metadata: Some(meta::ObjectMeta {
                name: s("node-a"),
                namespace: s("kube-node-lease"),
                owner_references: vec![meta::OwnerReference {
                    api_version: s("v1"),
                    kind: s("Node"),
                    name: s("node-a"),
                    uid: s("node-uid"),
                    controller: None,
                    block_owner_deletion: None,
                }],
                ..Default::default()
            }),
            spec: Some(coordination::LeaseSpec {
                holder_identity: s("node-a"),
                lease_duration_seconds: Some(40),
                acquire_time: Some(meta::MicroTime {
                    seconds: Some(1_714_566_896),
                    nanos: Some(123_456_789),
                }),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(1_714_566_900),
                    nanos: Some(0),
                }),
                lease_transitions: Some(0),
                strategy: None,
                preferred_holder: None,
            }),
        };
        let body = envelope("coordination.k8s.io/v1", "Lease", l.encode_to_vec());
        let expected = json!({
            "kind": "Lease",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {
                "name": "node-a",
                "namespace": "kube-node-lease",
                "creationTimestamp": null,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": "node-a",
                    "uid": "node-uid"
                }]
            },
            "spec": {
                "holderIdentity": "node-a",
                "leaseDurationSeconds": 40,
                "acquireTime": "2024-05-01T12:34:56.123456Z",
                "renewTime": "2024-05-01T12:35:00.000000Z",
                "leaseTransitions": 0
            }
        });
        assert_eq!(decode("Lease", &body).unwrap(), expected);
    }

    #[test]
    fn deployment_strategy_and_status() {
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: s("web"),
                generation: Some(3),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: BTreeMap::new(),
                    match_expressions: vec![meta::LabelSelectorRequirement {
                        key: s("tier"),
                        operator: s("In"),
                        values: vec!["web".to_owned(), "api".to_owned()],
                    }],
                }),
                template: None,
                strategy: Some(apps::DeploymentStrategy {
                    r#type: s("RollingUpdate"),
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: s("25%"),
                        }),
                        max_surge: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(1),
                            str_val: s(""),
                        }),
                    }),
                }),
                min_ready_seconds: Some(5),
                revision_history_limit: Some(10),
                paused: Some(true),
                progress_deadline_seconds: Some(600),
            }),
            status: Some(apps::DeploymentStatus {
                observed_generation: Some(3),
                replicas: Some(2),
                updated_replicas: Some(2),
                ready_replicas: Some(1),
                available_replicas: Some(1),
                unavailable_replicas: Some(0),
                terminating_replicas: None,
                conditions: vec![apps::DeploymentCondition {
                    r#type: s("Available"),
                    status: s("False"),
                    last_update_time: t(1_714_566_896),
                    last_transition_time: zero_time(),
                    reason: s("MinimumReplicasUnavailable"),
                    message: s(""),
                }],
                collision_count: Some(0),
            }),
        };
        let body = envelope("apps/v1", "Deployment", d.encode_to_vec());
        let expected = json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "generation": 3, "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]}
                ]},
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {"containers": null}
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}
                },
                "minReadySeconds": 5,
                "revisionHistoryLimit": 10,
                "paused": true,
                "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": 3,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "conditions": [{
                    "type": "Available",
                    "status": "False",
                    "lastUpdateTime": "2024-05-01T12:34:56Z",
                    "lastTransitionTime": null,
                    "reason": "MinimumReplicasUnavailable"
                }],
                "collisionCount": 0
            }
        });
        assert_eq!(decode("Deployment", &body).unwrap(), expected);
    }

    #[test]
    fn replica_set_round_trip() {
        let rs = apps::ReplicaSet {
            metadata: Some(meta::ObjectMeta {
                name: s("web-5d4f"),
                namespace: s("default"),
                ..Default::default()
            }),
            spec: Some(apps::ReplicaSetSpec {
                replicas: Some(2),
                min_ready_seconds: Some(0),
                selector: None,
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: s("app"),
                            image: s("nginx"),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
            }),
            status: Some(apps::ReplicaSetStatus {
                replicas: Some(0),
                ..Default::default()
            }),
        };
        let body = envelope("apps/v1", "ReplicaSet", rs.encode_to_vec());
        let expected = json!({
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web-5d4f", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 2,
                "selector": null,
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {}}]}
                }
            },
            "status": {"replicas": 0}
        });
        assert_eq!(decode("ReplicaSet", &body).unwrap(), expected);
    }

    #[test]
    fn envelope_without_type_meta_takes_the_endpoint_kind() {
        let ns = core::Namespace {
            metadata: Some(meta::ObjectMeta {
                name: s("bare"),
                ..Default::default()
            }),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".to_owned()],
            }),
            status: Some(core::NamespaceStatus {
                phase: s("Active"),
                conditions: vec![],
            }),
        };
        let unknown = Unknown {
            raw: Some(ns.encode_to_vec()),
            ..Default::default()
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        let expected = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "bare", "creationTimestamp": null},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        assert_eq!(decode("Namespace", &body).unwrap(), expected);
    }

    #[test]
    fn timestamps_follow_go_formatting() {
        let time = |seconds, nanos| super::time(&meta::Time { seconds, nanos });
        let micro = |seconds, nanos| micro_time(&meta::MicroTime { seconds, nanos });
        assert_eq!(time(None, None), Value::Null);
        assert_eq!(time(Some(0), None), json!("1970-01-01T00:00:00Z"));
        assert_eq!(time(Some(0), Some(0)), json!("1970-01-01T00:00:00Z"));
        assert_eq!(time(Some(-62_135_596_800), Some(0)), Value::Null);
        assert_eq!(
            time(Some(-62_135_596_799), None),
            json!("0001-01-01T00:00:01Z")
        );
        assert_eq!(
            time(Some(951_868_799), Some(999_999_999)),
            json!("2000-02-29T23:59:59Z")
        );
        assert_eq!(
            time(Some(253_402_300_799), None),
            json!("9999-12-31T23:59:59Z")
        );
        assert_eq!(micro(None, None), Value::Null);
        assert_eq!(
            micro(Some(-1), Some(999_999)),
            json!("1969-12-31T23:59:59.000999Z")
        );
        assert_eq!(
            micro(Some(1_714_566_896), Some(999_999_999)),
            json!("2024-05-01T12:34:56.999999Z")
        );
        assert_eq!(
            micro(Some(0), Some(-1_000)),
            json!("1969-12-31T23:59:59.999999Z")
        );
    }

    #[test]
    fn bad_magic_is_not_protobuf() {
        let mut body = BODY1.to_vec();
        body[0] = b'K';
        let err = decode("Namespace", &body).unwrap_err();
        assert!(matches!(err, DecodeError::NotProtobuf));
        assert_eq!(err.to_string(), "not a Kubernetes protobuf body");
        let json_body = br#"{"kind":"Namespace","apiVersion":"v1"}"#;
        assert!(matches!(
            decode("Namespace", json_body),
            Err(DecodeError::NotProtobuf)
        ));
        assert!(matches!(
            decode("Namespace", b"k8s"),
            Err(DecodeError::NotProtobuf)
        ));
        assert!(matches!(
            decode("Namespace", b"k8s\0"),
            Err(DecodeError::NotProtobuf)
        ));
        assert!(matches!(
            decode("Namespace", b""),
            Err(DecodeError::NotProtobuf)
        ));
    }

    #[test]
    fn wrong_kind_is_rejected() {
        let err = decode("Pod", BODY2).unwrap_err();
        assert_eq!(err.to_string(), "expected kind Pod, got Deployment");
        assert!(matches!(
            err,
            DecodeError::KindMismatch { ref expected, ref got }
                if expected == "Pod" && got == "Deployment"
        ));
    }

    #[test]
    fn wrong_api_version_is_rejected() {
        let body = envelope("events.k8s.io/v1", "Event", Vec::new());
        let err = decode("Event", &body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected apiVersion v1, got events.k8s.io/v1"
        );
    }

    #[test]
    fn garbage_is_a_protobuf_error() {
        let mut body = MAGIC.to_vec();
        body.extend([0x0a, 0xff, 0xff, 0xff]);
        let err = decode("Namespace", &body).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf(_)));
        assert!(err.to_string().starts_with("invalid protobuf body: "));

        // A valid envelope whose object bytes are garbage.
        let body = envelope("v1", "Namespace", vec![0x0a, 0x05, 0x01]);
        assert!(matches!(
            decode("Namespace", &body),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn config_maps_and_secrets_as_kubectl_sends_them() {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: s("app"),
                ..Default::default()
            }),
            data: [("mode".to_string(), "fast".to_string())].into(),
            binary_data: [("blob".to_string(), vec![0u8, 1])].into(),
            immutable: Some(true),
        };
        let v = decode(
            "ConfigMap",
            &envelope("v1", "ConfigMap", cm.encode_to_vec()),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "creationTimestamp": null},
                "immutable": true, "data": {"mode": "fast"}, "binaryData": {"blob": "AAE="}})
        );
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: s("db"),
                ..Default::default()
            }),
            data: [("password".to_string(), b"s3cret".to_vec())].into(),
            string_data: [("user".to_string(), "admin".to_string())].into(),
            r#type: s("Opaque"),
            immutable: None,
        };
        let v = decode("Secret", &envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "creationTimestamp": null},
                "data": {"password": "czNjcmV0"}, "stringData": {"user": "admin"}, "type": "Opaque"})
        );
    }

    #[test]
    fn unsupported_kind_is_rejected() {
        let err = decode("Service", BODY1).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedKind(ref k) if k == "Service"));
        assert_eq!(
            err.to_string(),
            "unsupported kind Service for protobuf bodies"
        );
    }

    #[test]
    fn unsupported_volume_source_is_rejected() {
        let p = core::Pod {
            spec: Some(core::PodSpec {
                volumes: vec![core::Volume {
                    name: s("share"),
                    volume_source: Some(core::VolumeSource {
                        nfs: Some(core::NfsVolumeSource {
                            server: s("nfs.example"),
                            path: s("/export"),
                            read_only: None,
                        }),
                        ..Default::default()
                    }),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = envelope("v1", "Pod", p.encode_to_vec());
        let err = decode("Pod", &body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported field in protobuf body: volume \"share\": volume source"
        );
    }

    #[test]
    fn projected_and_pvc_volumes() {
        let p = core::Pod {
            spec: Some(core::PodSpec {
                volumes: vec![
                    core::Volume {
                        name: s("kube-api-access"),
                        volume_source: Some(core::VolumeSource {
                            projected: Some(core::ProjectedVolumeSource {
                                sources: vec![
                                    core::VolumeProjection {
                                        service_account_token: Some(
                                            core::ServiceAccountTokenProjection {
                                                audience: s(""),
                                                expiration_seconds: Some(3607),
                                                path: s("token"),
                                            },
                                        ),
                                        ..Default::default()
                                    },
                                    core::VolumeProjection {
                                        downward_api: Some(core::DownwardAPIProjection {
                                            items: vec![core::DownwardAPIVolumeFile {
                                                path: s("namespace"),
                                                field_ref: Some(core::ObjectFieldSelector {
                                                    api_version: s("v1"),
                                                    field_path: s("metadata.namespace"),
                                                }),
                                                resource_field_ref: None,
                                                mode: None,
                                            }],
                                        }),
                                        ..Default::default()
                                    },
                                ],
                                default_mode: Some(420),
                            }),
                            ..Default::default()
                        }),
                    },
                    core::Volume {
                        name: s("db"),
                        volume_source: Some(core::VolumeSource {
                            persistent_volume_claim: Some(
                                core::PersistentVolumeClaimVolumeSource {
                                    claim_name: s("db-data"),
                                    read_only: Some(false),
                                },
                            ),
                            ..Default::default()
                        }),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = envelope("v1", "Pod", p.encode_to_vec());
        let value = decode("Pod", &body).unwrap();
        assert_eq!(
            value["spec"],
            json!({
                "volumes": [
                    {"name": "kube-api-access", "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"downwardAPI": {"items": [{
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
                            }]}}
                        ],
                        "defaultMode": 420
                    }},
                    {"name": "db", "persistentVolumeClaim": {"claimName": "db-data"}}
                ],
                "containers": null
            })
        );
        assert_eq!(value["status"], json!({}));
    }
}
