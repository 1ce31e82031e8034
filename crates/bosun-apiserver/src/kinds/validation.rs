//! Defaulting and validation of API objects, following kube-apiserver's
//! `SetDefaults_*` functions and `pkg/apis/*/validation` rules.
//!
//! Validation is meant to run on defaulted objects, exactly as kube-apiserver
//! validates the defaulted internal object: fields that defaulting always fills
//! (for example `spec.restartPolicy`) are reported as required when absent.
//!
//! Error values are rendered the way the Go `field.Error` renders them
//! (`%q` for strings, `%v` for numbers, `%#v` for maps and structs), so the
//! aggregate message matches what kubectl prints.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Container, Event, Namespace, Node, Pod, PodSpec, PodTemplateSpec, Probe, Taint, Toleration,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use bosun_api::field::{
    FieldError, duplicate, forbidden, invalid, invalid_str, not_supported, required, too_long,
};
use bosun_api::names::{
    go_quote, is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
    max_len_error, regex_error,
};
use bosun_api::selectors::LabelSelector as Selector;

// ---------------------------------------------------------------------------
// Go value rendering
// ---------------------------------------------------------------------------

/// Go's `%#v` for a `map[string]string`.
fn go_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let entries: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", entries.join(", "))
        }
    }
}

/// Go's `%#v` for a `[]string`.
fn go_string_slice(v: Option<&Vec<String>>) -> String {
    match v {
        None => "[]string(nil)".to_string(),
        Some(v) => {
            let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` for a `metav1.LabelSelector`.
fn go_label_selector(s: &LabelSelector) -> String {
    let exprs = match &s.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator),
                        go_string_slice(r.values.as_ref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_map(s.match_labels.as_ref()),
        exprs
    )
}

/// Go's `%#v` for an `intstr.IntOrString`.
fn go_int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => format!("intstr.IntOrString{{Type:0, IntVal:{i}, StrVal:\"\"}}"),
        IntOrString::String(s) => {
            format!(
                "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
                go_quote(s)
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Other syntax checks (names and labels are in `bosun_api::names`)
// ---------------------------------------------------------------------------

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const IS_NEGATIVE_ERR: &str = "must be greater than or equal to 0";
pub(super) const FIELD_IMMUTABLE_ERR: &str = "field is immutable";

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

fn validate_dns1123_label(value: &str, field: &str) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|m| invalid_str(field, value, &m))
        .collect()
}

fn validate_nonnegative(value: i64, field: &str) -> Vec<FieldError> {
    if value < 0 {
        vec![invalid(field, value.to_string(), IS_NEGATIVE_ERR)]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------
// Object metadata
// ---------------------------------------------------------------------------

pub(super) type NameFn = fn(&str) -> Vec<String>;

/// A generated name's trailing dash is replaced, as kube's `maskTrailingDash`,
/// because a suffix will follow it.
fn mask_trailing_dash(s: &str) -> String {
    if s.len() > 1 && s.ends_with('-') {
        format!("{}a", &s[..s.len() - 1])
    } else {
        s.to_string()
    }
}

fn validate_labels(labels: Option<&BTreeMap<String, String>>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            errs.push(invalid_str(field, k, &m));
        }
        for m in is_valid_label_value(v) {
            errs.push(invalid_str(field, v, &m));
        }
    }
    errs
}

fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    field: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        // Annotation keys are qualified names, case-insensitively.
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(field, k, &m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_finalizer_name(name: &str, field: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|m| invalid_str(field, name, &m))
        .collect();
    if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(invalid_str(
            field,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

pub(super) fn validate_object_meta(
    meta: &ObjectMeta,
    requires_namespace: bool,
    name_fn: NameFn,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(gn) = meta.generate_name.as_deref().filter(|s| !s.is_empty()) {
        for m in name_fn(&mask_trailing_dash(gn)) {
            errs.push(invalid_str("metadata.generateName", gn, &m));
        }
    }
    match meta.name.as_deref() {
        None | Some("") => errs.push(required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for m in name_fn(name) {
                errs.push(invalid_str("metadata.name", name, &m));
            }
        }
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if requires_namespace {
        if ns.is_empty() {
            errs.push(required("metadata.namespace", ""));
        } else {
            for m in is_dns1123_label(ns) {
                errs.push(invalid_str("metadata.namespace", ns, &m));
            }
        }
    } else if !ns.is_empty() {
        errs.push(forbidden("metadata.namespace", "not allowed on this type"));
    }
    errs.extend(validate_nonnegative(
        meta.generation.unwrap_or(0),
        "metadata.generation",
    ));
    errs.extend(validate_meta_common(meta));
    errs
}

/// Checks shared by create and update: labels, annotations, owner references
/// and finalizers.
fn validate_meta_common(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = validate_labels(meta.labels.as_ref(), "metadata.labels");
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        "metadata.annotations",
    ));
    for r in meta.owner_references.iter().flatten() {
        let version = match r.api_version.split_once('/') {
            Some((_, v)) => v,
            None => r.api_version.as_str(),
        };
        if version.is_empty() {
            errs.push(invalid_str(
                "metadata.ownerReferences.apiVersion",
                &r.api_version,
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(invalid_str(
                "metadata.ownerReferences.kind",
                &r.kind,
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(invalid_str(
                "metadata.ownerReferences.name",
                &r.name,
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(invalid_str(
                "metadata.ownerReferences.uid",
                &r.uid,
                "must not be empty",
            ));
        }
    }
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    for f in finalizers {
        errs.extend(validate_finalizer_name(f, "metadata.finalizers"));
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(invalid(
            "metadata.finalizers",
            go_string_slice(meta.finalizers.as_ref()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

pub(super) fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let new_gen = new.generation.unwrap_or(0);
    if new_gen < old.generation.unwrap_or(0) {
        errs.push(invalid(
            "metadata.generation",
            new_gen.to_string(),
            "must not be decremented",
        ));
    }
    errs.extend(validate_meta_common(new));
    let new_name = new.name.as_deref().unwrap_or("");
    if new_name != old.name.as_deref().unwrap_or("") {
        errs.push(invalid_str("metadata.name", new_name, FIELD_IMMUTABLE_ERR));
    }
    let new_ns = new.namespace.as_deref().unwrap_or("");
    if new_ns != old.namespace.as_deref().unwrap_or("") {
        errs.push(invalid_str(
            "metadata.namespace",
            new_ns,
            FIELD_IMMUTABLE_ERR,
        ));
    }
    // An update without a uid inherits the stored one before validation.
    if let Some(uid) = new.uid.as_deref().filter(|u| !u.is_empty())
        && uid != old.uid.as_deref().unwrap_or("")
    {
        errs.push(invalid_str("metadata.uid", uid, FIELD_IMMUTABLE_ERR));
    }
    errs
}

pub(super) fn name_is_dns_subdomain(s: &str) -> Vec<String> {
    is_dns1123_subdomain(s)
}

fn name_is_dns_label(s: &str) -> Vec<String> {
    is_dns1123_label(s)
}

// ---------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------

/// The tag that image-pull defaulting sees, as kubelet's `ParseImageName`:
/// `None` when the reference cannot be parsed, `Some("")` for a digest-only
/// reference, `Some("latest")` when no tag or digest is given.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/');
    let (repo, tag) = match name.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if repo.is_empty() || tag == Some("") || digest == Some("") {
        return None;
    }
    // Only the registry host may contain upper case letters.
    let path = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => repo,
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".to_string()),
    }
}

fn default_probe(p: &mut Option<Probe>) {
    let Some(p) = p.as_mut() else { return };
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(h) = p.http_get.as_mut() {
        if h.path.as_deref().unwrap_or("").is_empty() {
            h.path = Some("/".to_string());
        }
        if h.scheme.as_deref().unwrap_or("").is_empty() {
            h.scheme = Some("HTTP".to_string());
        }
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        let tag = image_tag(c.image.as_deref().unwrap_or(""));
        let policy = if tag.as_deref() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.image_pull_policy = Some(policy.to_string());
    }
    if c.termination_message_path
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        c.termination_message_path = Some("/dev/termination-log".to_string());
    }
    if c.termination_message_policy
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        c.termination_message_policy = Some("File".to_string());
    }
    for p in c.ports.iter_mut().flatten() {
        if p.protocol.as_deref().unwrap_or("").is_empty() {
            p.protocol = Some("TCP".to_string());
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(fr) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut())
            && fr.api_version.as_deref().unwrap_or("").is_empty()
        {
            fr.api_version = Some("v1".to_string());
        }
    }
    default_probe(&mut c.liveness_probe);
    default_probe(&mut c.readiness_probe);
    default_probe(&mut c.startup_probe);
}

fn default_volume(v: &mut Volume) {
    // A volume with no source at all becomes an emptyDir.
    let sources = serde_json::to_value(&*v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .map(|o| o.keys().filter(|k| *k != "name").count())
        })
        .unwrap_or(1);
    if sources == 0 {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(0o644);
    }
    if let Some(s) = v.config_map.as_mut() {
        s.default_mode.get_or_insert(0o644);
    }
    if let Some(s) = v.projected.as_mut() {
        s.default_mode.get_or_insert(0o644);
    }
    if let Some(s) = v.downward_api.as_mut() {
        s.default_mode.get_or_insert(0o644);
        for item in s.items.iter_mut().flatten() {
            if let Some(fr) = item.field_ref.as_mut()
                && fr.api_version.as_deref().unwrap_or("").is_empty()
            {
                fr.api_version = Some("v1".to_string());
            }
        }
    }
}

/// `SetDefaults_PodSpec` plus the per-container and per-volume defaults; shared
/// by pods and pod templates.
fn default_pod_spec(spec: &mut PodSpec) {
    if spec.dns_policy.as_deref().unwrap_or("").is_empty() {
        spec.dns_policy = Some("ClusterFirst".to_string());
    }
    if spec.restart_policy.as_deref().unwrap_or("").is_empty() {
        spec.restart_policy = Some("Always".to_string());
    }
    if spec.security_context.is_none() {
        spec.security_context = Some(Default::default());
    }
    spec.termination_grace_period_seconds.get_or_insert(30);
    if spec.scheduler_name.as_deref().unwrap_or("").is_empty() {
        spec.scheduler_name = Some("default-scheduler".to_string());
    }
    for c in spec.containers.iter_mut() {
        default_container(c);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

fn default_template(t: &mut PodTemplateSpec) {
    default_pod_spec(t.spec.get_or_insert_with(Default::default));
}

/// Requests default to limits for each resource that has a limit but no request.
fn default_requests_from_limits(c: &mut Container) {
    let Some(res) = c.resources.as_mut() else {
        return;
    };
    let Some(limits) = res.limits.as_ref() else {
        return;
    };
    let requests = res.requests.get_or_insert_with(BTreeMap::new);
    for (k, v) in limits {
        requests.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Applies kube's defaults to a pod (`SetDefaults_Pod`, `SetDefaults_PodSpec`,
/// container, port, probe and volume defaults).
pub fn default_pod(p: &mut Pod) {
    let spec = p.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    // Only pods (not templates) get request-from-limit, service links and host port defaults.
    for c in spec.containers.iter_mut() {
        default_requests_from_limits(c);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        default_requests_from_limits(c);
    }
    spec.enable_service_links.get_or_insert(true);
    if spec.host_network == Some(true) {
        let inits = spec.init_containers.iter_mut().flatten();
        for c in spec.containers.iter_mut().chain(inits) {
            for port in c.ports.iter_mut().flatten() {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
}

/// Applies kube's apps/v1 defaults to a deployment (`SetDefaults_Deployment`
/// and the pod template defaults).
pub fn default_deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    if strategy.type_.as_deref().unwrap_or("").is_empty() {
        strategy.type_ = Some("RollingUpdate".to_string());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".to_string()));
        ru.max_surge
            .get_or_insert_with(|| IntOrString::String("25%".to_string()));
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    default_template(&mut spec.template);
}

/// Applies kube's apps/v1 defaults to a replica set.
pub fn default_replicaset(r: &mut ReplicaSet) {
    let spec = r.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    default_template(spec.template.get_or_insert_with(Default::default));
}

/// Applies the defaults kube-apiserver gives a namespace: the `kubernetes.io/metadata.name`
/// label and phase `Active`. (The `kubernetes` finalizer is added on create only, by the
/// strategy, since the namespace controller removes it through `/finalize`.)
pub fn default_namespace(n: &mut Namespace) {
    if let Some(name) = n.metadata.name.clone().filter(|s| !s.is_empty()) {
        n.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("kubernetes.io/metadata.name".to_string(), name);
    }
    let status = n.status.get_or_insert_with(Default::default);
    if status.phase.as_deref().unwrap_or("").is_empty() {
        status.phase = Some("Active".to_string());
    }
}

/// Applies kube's node defaults: allocatable defaults to capacity.
pub fn default_node(n: &mut Node) {
    if let Some(status) = n.status.as_mut()
        && status.allocatable.is_none()
        && status.capacity.is_some()
    {
        status.allocatable = status.capacity.clone();
    }
}

// ---------------------------------------------------------------------------
// Pod validation
// ---------------------------------------------------------------------------

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_container_ports(c: &Container, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let idx = format!("{path}.ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(invalid_str(format!("{idx}.name"), name, &m));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(format!("{idx}.name"), go_quote(name)));
            }
        }
        if port.container_port == 0 {
            errs.push(required(format!("{idx}.containerPort"), ""));
        } else {
            for m in is_valid_port_num(port.container_port.into()) {
                errs.push(invalid(
                    format!("{idx}.containerPort"),
                    port.container_port.to_string(),
                    &m,
                ));
            }
        }
        let host_port = port.host_port.unwrap_or(0);
        if host_port != 0 {
            for m in is_valid_port_num(host_port.into()) {
                errs.push(invalid(
                    format!("{idx}.hostPort"),
                    host_port.to_string(),
                    &m,
                ));
            }
        }
        match port.protocol.as_deref().unwrap_or("") {
            "" => errs.push(required(format!("{idx}.protocol"), "")),
            p if !PROTOCOLS.contains(&p) => {
                errs.push(not_supported(format!("{idx}.protocol"), p, PROTOCOLS));
            }
            _ => {}
        }
    }
    errs
}

fn validate_env(c: &Container, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        let field = format!("{path}.env[{i}].name");
        if e.name.is_empty() {
            errs.push(required(field, ""));
        } else if !e
            .name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'=')
        {
            errs.push(invalid_str(
                field,
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    errs
}

fn validate_container_common(
    c: &Container,
    path: &str,
    volumes: &BTreeSet<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.push(required(name_path, ""));
    } else {
        errs.extend(validate_dns1123_label(&c.name, &name_path));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(required(format!("{path}.image"), ""));
    }
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(
            format!("{path}.terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        other => errs.push(invalid_str(
            format!("{path}.terminationMessagePolicy"),
            other,
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
    }
    errs.extend(validate_container_ports(c, path));
    errs.extend(validate_env(c, path));
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let idx = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.push(required(format!("{idx}.name"), ""));
        } else if !volumes.contains(m.name.as_str()) {
            // kube reports "Not found"; the closest kind here is Invalid.
            errs.push(invalid_str(
                format!("{idx}.name"),
                &m.name,
                "must match the name of a volume",
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(required(format!("{idx}.mountPath"), ""));
        }
    }
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "" => errs.push(required(format!("{path}.imagePullPolicy"), "")),
        p if !PULL_POLICIES.contains(&p) => {
            errs.push(not_supported(
                format!("{path}.imagePullPolicy"),
                p,
                PULL_POLICIES,
            ));
        }
        _ => {}
    }
    errs
}

fn validate_volumes<'a>(spec: &'a PodSpec, path: &str) -> (BTreeSet<&'a str>, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let idx = format!("{path}.volumes[{i}]");
        let name_path = format!("{idx}.name");
        if v.name.is_empty() {
            errs.push(required(name_path, ""));
        } else {
            let msgs = validate_dns1123_label(&v.name, &name_path);
            if msgs.is_empty() && !names.insert(v.name.as_str()) {
                errs.push(duplicate(name_path, go_quote(&v.name)));
            }
            errs.extend(msgs);
        }
        let sources: Vec<String> = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object()
                    .map(|o| o.keys().filter(|k| *k != "name").cloned().collect())
            })
            .unwrap_or_default();
        if sources.is_empty() {
            errs.push(required(idx, "must specify a volume type"));
        } else if sources.len() > 1 {
            errs.push(forbidden(
                format!("{idx}.{}", sources[1]),
                "may not specify more than 1 volume type",
            ));
        }
    }
    (names, errs)
}

fn validate_taint_effect(effect: &str, allow_empty: bool, field: &str) -> Vec<FieldError> {
    if effect.is_empty() {
        if allow_empty {
            return Vec::new();
        }
        return vec![required(field, "")];
    }
    if TAINT_EFFECTS.contains(&effect) {
        Vec::new()
    } else {
        vec![not_supported(field, effect, TAINT_EFFECTS)]
    }
}

fn go_toleration(t: &Toleration) -> String {
    let secs = match t.toleration_seconds {
        Some(s) => format!("&{s}"),
        None => "(*int64)(nil)".to_string(),
    };
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{}}}",
        go_quote(t.key.as_deref().unwrap_or("")),
        go_quote(t.operator.as_deref().unwrap_or("")),
        go_quote(t.value.as_deref().unwrap_or("")),
        go_quote(t.effect.as_deref().unwrap_or("")),
        secs
    )
}

fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let key = t.key.as_deref().unwrap_or("");
        let op = t.operator.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            for m in is_qualified_name(key) {
                errs.push(invalid_str(format!("{idx}.key"), key, &m));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid_str(
                format!("{idx}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                format!("{idx}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "" | "Equal" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid_str(
                        format!("{idx}.operator"),
                        value,
                        &msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid(
                        format!("{idx}.operator"),
                        go_toleration(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                format!("{idx}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        errs.extend(validate_taint_effect(
            effect,
            true,
            &format!("{idx}.effect"),
        ));
    }
    errs
}

/// kube's `ValidatePodSpec`, with `path` the prefix of the spec (`spec` or
/// `spec.template.spec`).
fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(required(
            format!("{path}.terminationGracePeriodSeconds"),
            "",
        ));
    }
    let (volumes, verrs) = validate_volumes(spec, path);
    errs.extend(verrs);

    let containers_path = format!("{path}.containers");
    if spec.containers.is_empty() {
        errs.push(required(containers_path.clone(), ""));
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let cpath = format!("{containers_path}[{i}]");
        errs.extend(validate_container_common(c, &cpath, &volumes));
        if !names.insert(c.name.as_str()) {
            errs.push(duplicate(format!("{cpath}.name"), go_quote(&c.name)));
        }
        if c.restart_policy.is_some() {
            errs.push(forbidden(
                format!("{cpath}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let cpath = format!("{path}.initContainers[{i}]");
        errs.extend(validate_container_common(c, &cpath, &volumes));
        if let Some(rp) = c.restart_policy.as_deref()
            && rp != "Always"
        {
            errs.push(not_supported(
                format!("{cpath}.restartPolicy"),
                rp,
                &["Always"],
            ));
        }
        if names.contains(c.name.as_str()) {
            errs.push(duplicate(format!("{cpath}.name"), go_quote(&c.name)));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
    }

    match spec.restart_policy.as_deref().unwrap_or("") {
        "" => errs.push(required(format!("{path}.restartPolicy"), "")),
        p if !RESTART_POLICIES.contains(&p) => {
            errs.push(not_supported(
                format!("{path}.restartPolicy"),
                p,
                RESTART_POLICIES,
            ));
        }
        _ => {}
    }
    match spec.dns_policy.as_deref().unwrap_or("") {
        "" => errs.push(required(format!("{path}.dnsPolicy"), "")),
        p if !DNS_POLICIES.contains(&p) => {
            errs.push(not_supported(format!("{path}.dnsPolicy"), p, DNS_POLICIES));
        }
        _ => {}
    }
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &format!("{path}.nodeSelector"),
    ));
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        for m in is_dns1123_subdomain(sa) {
            errs.push(invalid_str(format!("{path}.serviceAccountName"), sa, &m));
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for m in is_dns1123_subdomain(node) {
            errs.push(invalid_str(format!("{path}.nodeName"), node, &m));
        }
    }
    if let Some(ads) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(invalid(
            format!("{path}.activeDeadlineSeconds"),
            ads.to_string(),
            &inclusive_range_error(1, i32::MAX.into()),
        ));
    }
    if let Some(h) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(h, &format!("{path}.hostname")));
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_label(s, &format!("{path}.subdomain")));
    }
    if let Some(t) = spec.tolerations.as_deref() {
        errs.extend(validate_tolerations(t, &format!("{path}.tolerations")));
    }
    errs
}

/// Validates a pod on create (`ValidatePodCreate`): metadata and spec.
pub fn validate_pod(p: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&p.metadata, true, name_is_dns_subdomain);
    let empty = PodSpec::default();
    let spec = p.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, "spec"));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        && spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        errs.push(forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_container_updates(
    new: &[Container],
    old: &[Container],
    path: &str,
) -> (Vec<FieldError>, bool) {
    if new.len() != old.len() {
        return (
            vec![forbidden(
                path,
                "pod updates may not add or remove containers",
            )],
            true,
        );
    }
    let mut errs = Vec::new();
    for (i, c) in new.iter().enumerate() {
        let image = c.image.as_deref().unwrap_or("");
        if image.is_empty() {
            errs.push(required(format!("{path}[{i}].image"), ""));
        }
        if image.trim().len() != image.len() {
            errs.push(invalid_str(
                format!("{path}[{i}].image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }
    (errs, false)
}

/// Validates a pod update (`ValidatePodUpdate`): only images, a shortened
/// `activeDeadlineSeconds`, added tolerations, a negative grace period moved
/// to 1 and removed scheduling gates may change.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let empty = PodSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(new_spec, "spec"));

    let (cerrs, stop) = validate_container_updates(
        &new_spec.containers,
        &old_spec.containers,
        "spec.containers",
    );
    errs.extend(cerrs);
    if stop {
        return errs;
    }
    let new_init = new_spec.init_containers.as_deref().unwrap_or_default();
    let old_init = old_spec.init_containers.as_deref().unwrap_or_default();
    let (ierrs, stop) = validate_container_updates(new_init, old_init, "spec.initContainers");
    errs.extend(ierrs);
    if stop {
        return errs;
    }

    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(n), old_ads) => {
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(invalid(
                    "spec.activeDeadlineSeconds",
                    n.to_string(),
                    &inclusive_range_error(0, i32::MAX.into()),
                ));
                return errs;
            }
            if let Some(o) = old_ads
                && o < n
            {
                errs.push(invalid(
                    "spec.activeDeadlineSeconds",
                    n.to_string(),
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(invalid(
            "spec.activeDeadlineSeconds",
            "null".to_string(),
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }

    let new_tol = new_spec.tolerations.as_deref().unwrap_or_default();
    let old_tol = old_spec.tolerations.as_deref().unwrap_or_default();
    for o in old_tol {
        let kept = new_tol.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            &o == n
        });
        if !kept {
            errs.push(forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }

    // Everything that may change is copied from the old spec; any remaining
    // difference is a forbidden change.
    let mut munged = new_spec.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image = o.image.clone();
    }
    for (c, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_init.iter())
    {
        c.image = o.image.clone();
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.tolerations = old_spec.tolerations.clone();
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let new_gates = munged.scheduling_gates.as_deref().unwrap_or_default();
    let old_gates = old_spec.scheduling_gates.as_deref().unwrap_or_default();
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        munged.scheduling_gates = old_spec.scheduling_gates.clone();
    } else {
        errs.push(forbidden(
            "spec.schedulingGates",
            "only deletion is allowed, but found new scheduling gate",
        ));
        munged.scheduling_gates = old_spec.scheduling_gates.clone();
    }
    if !pod_specs_equal(&munged, old_spec) {
        errs.push(forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
    errs
}

/// Compares specs semantically: an absent list or map equals an empty one,
/// as they are the same after a round trip through kube's internal types.
fn pod_specs_equal(a: &PodSpec, b: &PodSpec) -> bool {
    fn normalize(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, normalize(v)))
                    .filter(|(_, v)| match v {
                        serde_json::Value::Array(a) => !a.is_empty(),
                        serde_json::Value::Object(o) => !o.is_empty(),
                        serde_json::Value::Null => false,
                        _ => true,
                    })
                    .collect(),
            ),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(normalize).collect())
            }
            other => other,
        }
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(x), Ok(y)) => normalize(x) == normalize(y),
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Deployments and replica sets
// ---------------------------------------------------------------------------

fn validate_label_selector(s: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(s.match_labels.as_ref(), &format!("{path}.matchLabels"));
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let idx = format!("{path}.matchExpressions[{i}]");
        let nvalues = r.values.as_ref().map_or(0, Vec::len);
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if nvalues == 0 {
                    errs.push(required(
                        format!("{idx}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if nvalues > 0 {
                    errs.push(forbidden(
                        format!("{idx}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(invalid_str(
                format!("{idx}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for m in is_qualified_name(&r.key) {
            errs.push(invalid_str(format!("{idx}.key"), &r.key, &m));
        }
        for (j, v) in r.values.iter().flatten().enumerate() {
            for m in is_valid_label_value(v) {
                errs.push(invalid_str(format!("{idx}.values[{j}]"), v, &m));
            }
        }
    }
    errs
}

/// Whether a valid selector selects the labels, through the one label matcher.
fn selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::from_typed(s).is_ok_and(|sel| sel.matches_labels(Some(labels)))
}

/// Validation shared by deployments and replica sets: replicas, selector and
/// the pod template (`ValidatePodTemplateSpecForReplicaSet`).
fn validate_replicated_spec(
    replicas: i32,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
) -> Vec<FieldError> {
    let mut errs = validate_nonnegative(replicas.into(), "spec.replicas");
    // An absent selector is indistinguishable from `{}` once deserialized;
    // kube treats an absent one as required and as matching nothing.
    let missing = selector.match_labels.is_none() && selector.match_expressions.is_none();
    let selector_errs;
    if missing {
        errs.push(required("spec.selector", ""));
        selector_errs = false;
    } else {
        let serrs = validate_label_selector(selector, "spec.selector");
        selector_errs = !serrs.is_empty();
        errs.extend(serrs);
        let n = selector.match_labels.as_ref().map_or(0, BTreeMap::len)
            + selector.match_expressions.as_ref().map_or(0, Vec::len);
        if n == 0 {
            errs.push(invalid(
                "spec.selector",
                go_label_selector(selector),
                "empty selector is invalid for deployment",
            ));
        }
    }
    if selector_errs {
        errs.push(invalid(
            "spec.selector",
            go_label_selector(selector),
            "invalid label selector",
        ));
        return errs;
    }

    let meta = template.metadata.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let selector_empty = !missing
        && selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if !selector_empty && (missing || !selector_matches(selector, &labels)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            go_map(meta.labels.as_ref()),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_labels(
        meta.labels.as_ref(),
        "spec.template.labels",
    ));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        "spec.template.annotations",
    ));
    let empty = PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, "spec.template.spec"));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(forbidden(
            "spec.template.spec.ephemeralContainers",
            "ephemeral containers not allowed in pod template",
        ));
    }
    let rp = spec.restart_policy.as_deref().unwrap_or("");
    if rp != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

fn validate_int_or_percent(v: &IntOrString, field: &str) -> Vec<FieldError> {
    match v {
        IntOrString::String(s) => {
            if is_valid_percent(s) {
                Vec::new()
            } else {
                vec![invalid(
                    field,
                    go_int_or_string(v),
                    &regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                )]
            }
        }
        IntOrString::Int(i) => validate_nonnegative((*i).into(), field),
    }
}

fn is_valid_percent(s: &str) -> bool {
    s.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn int_or_percent_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(i) => (*i).into(),
        IntOrString::String(s) if is_valid_percent(s) => {
            s.trim_end_matches('%').parse().unwrap_or(0)
        }
        IntOrString::String(s) => s.parse().unwrap_or(0),
    }
}

fn validate_deployment_strategy(spec: &DeploymentSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Default::default();
    let strategy = spec.strategy.as_ref().unwrap_or(&empty);
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match strategy.rolling_update.as_ref() {
            None => errs.push(required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let zero = IntOrString::Int(0);
                let mu = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let ms = ru.max_surge.as_ref().unwrap_or(&zero);
                let mu_path = "spec.strategy.rollingUpdate.maxUnavailable";
                errs.extend(validate_int_or_percent(mu, mu_path));
                errs.extend(validate_int_or_percent(
                    ms,
                    "spec.strategy.rollingUpdate.maxSurge",
                ));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(invalid(
                        mu_path,
                        go_int_or_string(mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if let IntOrString::String(s) = mu
                    && is_valid_percent(s)
                    && int_or_percent_value(mu) > 100
                {
                    errs.push(invalid(
                        mu_path,
                        go_int_or_string(mu),
                        "must not be greater than 100%",
                    ));
                }
            }
        },
        other => errs.push(not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

fn validate_deployment_spec(spec: &DeploymentSpec) -> Vec<FieldError> {
    let mut errs =
        validate_replicated_spec(spec.replicas.unwrap_or(0), &spec.selector, &spec.template);
    errs.extend(validate_deployment_strategy(spec));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(validate_nonnegative(
        min_ready.into(),
        "spec.minReadySeconds",
    ));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(r.into(), "spec.revisionHistoryLimit"));
    }
    if let Some(p) = spec.progress_deadline_seconds {
        errs.extend(validate_nonnegative(
            p.into(),
            "spec.progressDeadlineSeconds",
        ));
        if p <= min_ready {
            errs.push(invalid(
                "spec.progressDeadlineSeconds",
                p.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// Validates a deployment on create (`ValidateDeployment`).
pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&d.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_deployment_spec(
        &d.spec.clone().unwrap_or_default(),
    ));
    errs
}

fn validate_selector_immutable(new: &LabelSelector, old: &LabelSelector) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![invalid(
            "spec.selector",
            go_label_selector(new),
            FIELD_IMMUTABLE_ERR,
        )]
    }
}

/// Validates a deployment update; apps/v1 makes `spec.selector` immutable.
pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let new_spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    errs.extend(validate_deployment_spec(&new_spec));
    errs.extend(validate_selector_immutable(
        &new_spec.selector,
        &old_spec.selector,
    ));
    errs
}

fn validate_replicaset_spec(r: &ReplicaSet) -> Vec<FieldError> {
    let spec = r.spec.clone().unwrap_or_default();
    let mut errs = validate_nonnegative(spec.replicas.unwrap_or(0).into(), "spec.replicas");
    errs.extend(validate_nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        "spec.minReadySeconds",
    ));
    // Replicas were checked above, in kube's order.
    let template = spec.template.unwrap_or_default();
    errs.extend(validate_replicated_spec(0, &spec.selector, &template));
    errs
}

/// Validates a replica set on create (`ValidateReplicaSet`).
pub fn validate_replicaset(r: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&r.metadata, true, name_is_dns_subdomain);
    errs.extend(validate_replicaset_spec(r));
    errs
}

/// Validates a replica set update; apps/v1 makes `spec.selector` immutable.
pub fn validate_replicaset_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_replicaset_spec(new));
    let new_sel = new
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let old_sel = old
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    errs.extend(validate_selector_immutable(&new_sel, &old_sel));
    errs
}

// ---------------------------------------------------------------------------
// Namespaces, nodes, events, leases
// ---------------------------------------------------------------------------

/// Validates a namespace (`ValidateNamespace`): the name is a DNS-1123 label.
pub fn validate_namespace(n: &Namespace) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&n.metadata, false, name_is_dns_label);
    let finalizers = n.spec.as_ref().and_then(|s| s.finalizers.as_deref());
    for f in finalizers.unwrap_or_default() {
        errs.extend(validate_finalizer_name(f, "spec.finalizers"));
    }
    errs
}

fn go_taint(t: &Taint) -> String {
    format!(
        "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:(*v1.Time)(nil)}}",
        go_quote(&t.key),
        go_quote(t.value.as_deref().unwrap_or("")),
        go_quote(&t.effect)
    )
}

/// Validates a node (`ValidateNode`): metadata and taints.
pub fn validate_node(n: &Node) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&n.metadata, false, name_is_dns_subdomain);
    let taints = n.spec.as_ref().and_then(|s| s.taints.as_deref());
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (i, t) in taints.unwrap_or_default().iter().enumerate() {
        // kube reports taints under `metadata.taints`.
        let idx = format!("metadata.taints[{i}]");
        for m in is_qualified_name(&t.key) {
            errs.push(invalid_str(format!("{idx}.key"), &t.key, &m));
        }
        let value = t.value.as_deref().unwrap_or("");
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid_str(format!("{idx}.value"), value, &msgs.join(";")));
        }
        errs.extend(validate_taint_effect(
            &t.effect,
            false,
            &format!("{idx}.effect"),
        ));
        if !seen.insert((t.effect.as_str(), t.key.as_str())) {
            let mut e = duplicate(idx, go_taint(t));
            e.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(e);
        }
    }
    errs
}

/// Validates an event created through core/v1 (`ValidateEventCreate` with the
/// legacy rules).
pub fn validate_event(e: &Event) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if e.metadata.name.as_deref().unwrap_or("").is_empty() {
        errs.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    }
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let involved_ns = e.involved_object.namespace.as_deref().unwrap_or("");
    let mismatch = || {
        invalid_str(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        )
    };
    if e.event_time.is_none() {
        if involved_ns.is_empty() {
            // Old clients record cluster-scoped objects in "default".
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = e.reporting_component.as_deref().unwrap_or("");
        if controller.is_empty() {
            errs.push(required("reportingController", ""));
        }
        for m in is_qualified_name(controller) {
            errs.push(invalid_str("reportingController", controller, &m));
        }
        let checks: [(&str, Option<&String>, usize, bool); 4] = [
            (
                "reportingInstance",
                e.reporting_instance.as_ref(),
                128,
                true,
            ),
            ("action", e.action.as_ref(), 128, true),
            ("reason", e.reason.as_ref(), 128, true),
            ("message", e.message.as_ref(), 1024, false),
        ];
        for (field, value, limit, needed) in checks {
            let len = value.map_or(0, String::len);
            if needed && len == 0 {
                errs.push(required(field, ""));
            }
            if len > limit {
                errs.push(invalid_str(
                    field,
                    "",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
    }
    for m in is_dns1123_subdomain(ns) {
        errs.push(invalid_str("namespace", ns, &m));
    }
    errs
}

/// Validates a lease (`ValidateLease`): metadata and spec bounds.
pub fn validate_lease(l: &Lease) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&l.metadata, true, name_is_dns_subdomain);
    let Some(spec) = l.spec.as_ref() else {
        return errs;
    };
    if let Some(d) = spec.lease_duration_seconds
        && d <= 0
    {
        errs.push(invalid(
            "spec.leaseDurationSeconds",
            d.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions
        && t < 0
    {
        errs.push(invalid(
            "spec.leaseTransitions",
            t.to_string(),
            IS_NEGATIVE_ERR,
        ));
    }
    let strategy = spec.strategy.as_deref().unwrap_or("");
    if spec.strategy.is_some() {
        if strategy.contains('/') {
            for m in is_qualified_name(strategy) {
                errs.push(invalid_str("spec.strategy", strategy, &m));
            }
        } else if strategy != "OldestEmulationVersion" {
            errs.push(not_supported(
                "spec.strategy",
                strategy,
                &["OldestEmulationVersion"],
            ));
        }
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && strategy.is_empty()
    {
        errs.push(forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bosun_api::field::{ErrorKind, invalid_message};
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).unwrap();
        default_pod(&mut p);
        p
    }

    fn simple_pod(containers: serde_json::Value) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": containers}
        }))
    }

    fn deployment(v: serde_json::Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(v).unwrap();
        default_deployment(&mut d);
        d
    }

    fn web_deployment(selector: serde_json::Value, labels: serde_json::Value) -> Deployment {
        deployment(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": selector,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}
                }
            }
        }))
    }

    fn strings(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn valid_pod_has_no_errors() {
        let p = simple_pod(
            json!([{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]),
        );
        assert_eq!(strings(&validate_pod(&p)), Vec::<String>::new());
    }

    #[test]
    fn missing_image() {
        let p = simple_pod(json!([{"name": "c"}]));
        let errs = validate_pod(&p);
        assert_eq!(
            invalid_message("Pod", "p", &errs),
            "Pod \"p\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(errs[0].reason(), "FieldValueRequired");
    }

    #[test]
    fn missing_name_and_image_are_aggregated() {
        let p = simple_pod(json!([{"name": ""}]));
        assert_eq!(
            invalid_message("Pod", "p", &validate_pod(&p)),
            "Pod \"p\" is invalid: [spec.containers[0].name: Required value, spec.containers[0].image: Required value]"
        );
    }

    #[test]
    fn containers_required() {
        let p = simple_pod(json!([]));
        assert_eq!(
            strings(&validate_pod(&p)),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn bad_pod_name() {
        let mut p = simple_pod(json!([{"name": "c", "image": "busybox"}]));
        p.metadata.name = Some("Foo".into());
        let errs = validate_pod(&p);
        assert_eq!(
            strings(&errs),
            vec![format!(
                "metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MSG}"
            )]
        );
        assert_eq!(errs[0].kind, ErrorKind::Invalid("\"Foo\"".into()));
        assert_eq!(errs[0].reason(), "FieldValueInvalid");
    }

    #[test]
    fn missing_metadata_name() {
        let mut p = simple_pod(json!([{"name": "c", "image": "busybox"}]));
        p.metadata.name = None;
        assert_eq!(
            strings(&validate_pod(&p)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn bad_container_name_and_duplicate() {
        let p = simple_pod(json!([
            {"name": "c", "image": "a"},
            {"name": "c", "image": "b"},
            {"name": "Web_1", "image": "b"}
        ]));
        assert_eq!(
            strings(&validate_pod(&p)),
            vec![
                "spec.containers[1].name: Duplicate value: \"c\"".to_string(),
                format!("spec.containers[2].name: Invalid value: \"Web_1\": {LABEL_MSG}"),
            ]
        );
        let e = &validate_pod(&p)[0];
        assert_eq!(e.reason(), "FieldValueDuplicate");
        assert_eq!(e.message(), "Duplicate value: \"c\"");
    }

    #[test]
    fn init_container_name_collides_with_container() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "a"}],
                "initContainers": [{"name": "c", "image": "a"}]
            }
        }));
        assert_eq!(
            strings(&validate_pod(&p)),
            vec!["spec.initContainers[0].name: Duplicate value: \"c\""]
        );
    }

    #[test]
    fn port_range_and_protocol() {
        let p = simple_pod(json!([{"name": "c", "image": "a", "ports": [
            {"containerPort": 70000, "protocol": "HTTP"},
            {"containerPort": 80, "hostPort": -1, "name": "BAD--"}
        ]}]));
        assert_eq!(
            strings(&validate_pod(&p)),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[1].name: Invalid value: \"BAD--\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.containers[0].ports[1].name: Invalid value: \"BAD--\": must contain at least one letter (a-z)",
                "spec.containers[0].ports[1].name: Invalid value: \"BAD--\": must not contain consecutive hyphens",
                "spec.containers[0].ports[1].name: Invalid value: \"BAD--\": must not begin or end with a hyphen",
                "spec.containers[0].ports[1].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn restart_and_dns_policy_not_supported() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "a"}],
                "restartPolicy": "Sometimes",
                "dnsPolicy": "Google"
            }
        }));
        let errs = validate_pod(&p);
        assert_eq!(
            strings(&errs),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"",
            ]
        );
        assert_eq!(errs[0].reason(), "FieldValueNotSupported");
        assert_eq!(
            errs[0].kind,
            ErrorKind::NotSupported(
                "\"Sometimes\"".into(),
                vec!["Always".into(), "OnFailure".into(), "Never".into()]
            )
        );
    }

    #[test]
    fn undefaulted_pod_reports_required_fields() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "a"}]}
        }))
        .unwrap();
        assert_eq!(
            strings(&validate_pod(&p)),
            vec![
                "spec.terminationGracePeriodSeconds: Required value",
                "spec.containers[0].terminationMessagePolicy: Required value: must be 'File' or 'FallbackToLogsOnError'",
                "spec.containers[0].imagePullPolicy: Required value",
                "spec.restartPolicy: Required value",
                "spec.dnsPolicy: Required value",
            ]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let mut p = simple_pod(json!([{"name": "c", "image": "a"}]));
        p.metadata.labels = Some(BTreeMap::from([
            ("app".to_string(), "-bad".to_string()),
            ("a/b/c".to_string(), "x".to_string()),
        ]));
        p.metadata.annotations = Some(BTreeMap::from([(
            "big".to_string(),
            "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT),
        )]));
        let errs = validate_pod(&p);
        assert_eq!(
            strings(&errs),
            vec![
                "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ]
        );
        assert_eq!(errs[2].kind, ErrorKind::TooLong(262144));
        assert_eq!(errs[2].reason(), "FieldValueTooLong");
    }

    #[test]
    fn image_pull_policy_defaults() {
        let p = simple_pod(json!([
            {"name": "a", "image": "busybox"},
            {"name": "b", "image": "busybox:1.36"},
            {"name": "c", "image": "busybox:latest"},
            {"name": "d", "image": "busybox@sha256:0123456789abcdef"},
            {"name": "e", "image": "localhost:5000/busybox"},
            {"name": "f", "image": "registry.io:443/team/app:v2"},
            {"name": "g", "image": "busybox", "imagePullPolicy": "Never"}
        ]));
        let policies: Vec<&str> = p
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.image_pull_policy.as_deref().unwrap())
            .collect();
        assert_eq!(
            policies,
            vec![
                "Always",
                "IfNotPresent",
                "Always",
                "IfNotPresent",
                "Always",
                "IfNotPresent",
                "Never"
            ]
        );
    }

    #[test]
    fn pod_spec_defaults() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "c", "image": "a",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
                    "livenessProbe": {"httpGet": {"port": 80}}
                }],
                "initContainers": [{"name": "i", "image": "a:1"}],
                "volumes": [{"name": "v"}]
            }
        }));
        let v = serde_json::to_value(&p.spec).unwrap();
        assert_eq!(v["restartPolicy"], "Always");
        assert_eq!(v["dnsPolicy"], "ClusterFirst");
        assert_eq!(v["schedulerName"], "default-scheduler");
        assert_eq!(v["terminationGracePeriodSeconds"], 30);
        assert_eq!(v["securityContext"], json!({}));
        assert_eq!(v["enableServiceLinks"], true);
        let c = &v["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(v["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(v["volumes"][0], json!({"name": "v", "emptyDir": {}}));
    }

    #[test]
    fn deployment_defaults() {
        let d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        let spec = serde_json::to_value(d.spec.as_ref().unwrap()).unwrap();
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let t = &spec["template"]["spec"];
        assert_eq!(t["restartPolicy"], "Always");
        assert_eq!(t["containers"][0]["imagePullPolicy"], "Always");
        // Templates do not get pod-only defaults.
        assert!(t.get("enableServiceLinks").is_none());
        assert!(validate_deployment(&d).is_empty());

        let recreate = deployment(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }));
        let s = serde_json::to_value(&recreate.spec.as_ref().unwrap().strategy).unwrap();
        assert_eq!(s, json!({"type": "Recreate"}));
    }

    #[test]
    fn selector_mismatch() {
        let d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "y"}));
        let errs = validate_deployment(&d);
        assert_eq!(
            invalid_message("Deployment.apps", "web", &errs),
            "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn missing_and_empty_selector() {
        let d = deployment(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }));
        assert_eq!(
            invalid_message("Deployment.apps", "web", &validate_deployment(&d)),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`]"
        );
        let mut d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        d.spec.as_mut().unwrap().selector.match_labels = Some(BTreeMap::new());
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn match_expressions_selector() {
        let d = web_deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}),
            json!({"app": "y"}),
        );
        assert!(validate_deployment(&d).is_empty());
        let d = web_deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "Near"}]}),
            json!({"app": "y"}),
        );
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec![
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"Near\", Values:[]string(nil)}}}: invalid label selector",
            ]
        );
    }

    #[test]
    fn negative_replicas() {
        let mut d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        d.spec.as_mut().unwrap().replicas = Some(-1);
        let errs = validate_deployment(&d);
        assert_eq!(
            invalid_message("Deployment.apps", "web", &errs),
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(errs[0].kind, ErrorKind::Invalid("-1".into()));
    }

    #[test]
    fn template_restart_policy_and_strategy() {
        let mut d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        let spec = d.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        spec.strategy.as_mut().unwrap().type_ = Some("BlueGreen".into());
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"",
            ]
        );
    }

    #[test]
    fn rolling_update_values() {
        let mut d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        let ru = d
            .spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update
            .as_mut()
            .unwrap();
        ru.max_unavailable = Some(IntOrString::String("0%".into()));
        ru.max_surge = Some(IntOrString::Int(0));
        assert_eq!(
            strings(&validate_deployment(&d)),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0"
            ]
        );
    }

    #[test]
    fn template_spec_errors_use_template_prefix() {
        let d = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        let mut d2 = d.clone();
        d2.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = None;
        assert_eq!(
            strings(&validate_deployment(&d2)),
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn immutable_selector() {
        let old = web_deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        let new = web_deployment(json!({"matchLabels": {"app": "y"}}), json!({"app": "y"}));
        let errs = validate_deployment_update(&new, &old);
        assert_eq!(
            invalid_message("Deployment.apps", "web", &errs),
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        assert!(validate_deployment_update(&old, &old).is_empty());
    }

    #[test]
    fn replicaset_validation() {
        let mut r: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap();
        default_replicaset(&mut r);
        assert_eq!(r.spec.as_ref().unwrap().replicas, Some(1));
        assert!(validate_replicaset(&r).is_empty());
        let mut bad = r.clone();
        bad.spec.as_mut().unwrap().replicas = Some(-2);
        bad.spec.as_mut().unwrap().selector.match_labels =
            Some(BTreeMap::from([("app".to_string(), "z".to_string())]));
        assert_eq!(
            strings(&validate_replicaset_update(&bad, &r)),
            vec![
                "spec.replicas: Invalid value: -2: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"z\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            ]
        );
    }

    #[test]
    fn forbidden_pod_update() {
        let old =
            simple_pod(json!([{"name": "c", "image": "a", "ports": [{"containerPort": 80}]}]));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 81;
        let errs = validate_pod_update(&new, &old);
        assert_eq!(
            invalid_message("Pod", "p", &errs),
            "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
        );
        assert_eq!(errs[0].reason(), "FieldValueForbidden");
    }

    #[test]
    fn allowed_pod_updates() {
        let old = simple_pod(json!([{"name": "c", "image": "a"}]));
        let mut new = old.clone();
        let spec = new.spec.as_mut().unwrap();
        spec.containers[0].image = Some("b".into());
        spec.active_deadline_seconds = Some(100);
        spec.tolerations = Some(vec![Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        new.metadata.labels = Some(BTreeMap::from([("new".to_string(), "label".to_string())]));
        assert_eq!(
            strings(&validate_pod_update(&new, &old)),
            Vec::<String>::new()
        );

        // Removing a toleration and raising the deadline are rejected.
        let mut newer = new.clone();
        newer.spec.as_mut().unwrap().tolerations = None;
        newer.spec.as_mut().unwrap().active_deadline_seconds = Some(50);
        assert_eq!(
            strings(&validate_pod_update(&newer, &new)),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
        let mut raised = new.clone();
        raised.spec.as_mut().unwrap().active_deadline_seconds = Some(200);
        assert_eq!(
            strings(&validate_pod_update(&raised, &new)),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
            ]
        );
    }

    #[test]
    fn pod_update_container_count_and_name() {
        let old = simple_pod(json!([{"name": "c", "image": "a"}]));
        let mut new = simple_pod(json!([{"name": "c", "image": "a"}, {"name": "d", "image": "a"}]));
        assert_eq!(
            strings(&validate_pod_update(&new, &old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        new = old.clone();
        new.metadata.name = Some("q".into());
        assert_eq!(
            strings(&validate_pod_update(&new, &old)),
            vec!["metadata.name: Invalid value: \"q\": field is immutable"]
        );
    }

    #[test]
    fn namespace_defaults_and_validation() {
        let mut n: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
        default_namespace(&mut n);
        let v = serde_json::to_value(&n).unwrap();
        // The `kubernetes` finalizer is the create strategy's, not a default: defaulting
        // an update must not put back what the namespace controller removed.
        assert!(v.pointer("/spec/finalizers").is_none(), "{v}");
        assert_eq!(v["status"]["phase"], "Active");
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert!(validate_namespace(&n).is_empty());

        n.metadata.name = Some("team.a".into());
        n.metadata.namespace = Some("x".into());
        assert_eq!(
            strings(&validate_namespace(&n)),
            vec![
                "metadata.name: Invalid value: \"team.a\": must not contain dots",
                "metadata.namespace: Forbidden: not allowed on this type",
            ]
        );
        n.metadata.namespace = None;
        n.metadata.name = Some("ok".into());
        n.spec.get_or_insert_with(Default::default).finalizers = Some(vec!["custom".into()]);
        assert_eq!(
            strings(&validate_namespace(&n)),
            vec![
                "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
    }

    #[test]
    fn node_validation() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1"},
            "spec": {"taints": [
                {"key": "k", "effect": "NoSchedule"},
                {"key": "k", "effect": "Sometimes"},
                {"key": "k", "effect": "NoSchedule", "value": "v"}
            ]},
            "status": {"capacity": {"cpu": "4"}}
        }))
        .unwrap();
        default_node(&mut n);
        assert_eq!(
            serde_json::to_value(&n.status.as_ref().unwrap().allocatable).unwrap(),
            json!({"cpu": "4"})
        );
        assert_eq!(
            strings(&validate_node(&n)),
            vec![
                "metadata.taints[1].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "metadata.taints[2]: Duplicate value: core.Taint{Key:\"k\", Value:\"v\", Effect:\"NoSchedule\", TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair",
            ]
        );
        n.metadata.name = Some("Node_1".into());
        n.spec = None;
        assert_eq!(
            strings(&validate_node(&n)),
            vec![format!(
                "metadata.name: Invalid value: \"Node_1\": {SUBDOMAIN_MSG}"
            )]
        );
    }

    #[test]
    fn event_namespace_must_match() {
        let e: Event = serde_json::from_value(json!({
            "metadata": {"name": "p.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"},
            "reason": "Started"
        }))
        .unwrap();
        assert_eq!(
            strings(&validate_event(&e)),
            vec![
                "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
            ]
        );
        let mut ok = e.clone();
        ok.involved_object.namespace = Some("default".into());
        assert!(validate_event(&ok).is_empty());
        // Cluster-scoped objects may be recorded in "default" or with no namespace.
        let mut node_event = e.clone();
        node_event.involved_object = Default::default();
        assert!(validate_event(&node_event).is_empty());
        node_event.metadata.namespace = Some("kube-system".into());
        assert_eq!(
            strings(&validate_event(&node_event)),
            vec!["involvedObject.namespace: Invalid value: \"\": does not match event.namespace"]
        );
    }

    #[test]
    fn lease_validation() {
        let l: Lease = serde_json::from_value(json!({
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 0, "leaseTransitions": -1}
        }))
        .unwrap();
        assert_eq!(
            strings(&validate_lease(&l)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        let mut ok = l.clone();
        ok.spec = Some(Default::default());
        assert!(validate_lease(&ok).is_empty());
        ok.metadata.namespace = None;
        assert_eq!(
            strings(&validate_lease(&ok)),
            vec!["metadata.namespace: Required value"]
        );
    }

    #[test]
    fn aggregate_deduplicates_and_handles_empty() {
        let e = required("spec.x", "");
        assert_eq!(
            invalid_message("Pod", "p", &[e.clone(), e.clone()]),
            "Pod \"p\" is invalid: spec.x: Required value"
        );
        assert_eq!(invalid_message("Pod", "p", &[]), "Pod \"p\" is invalid");
    }

    #[test]
    fn too_many_message() {
        let e = FieldError {
            field: "f".into(),
            kind: ErrorKind::TooMany,
            detail: "must have at most 3 items".into(),
        };
        assert_eq!(e.to_string(), "f: Too many: must have at most 3 items");
        assert_eq!(e.reason(), "FieldValueTooMany");
    }
}
