//! `metadata.managedFields` for `Update` operations, as kube-apiserver's field manager records
//! them: each write names its manager (kubectl's `fieldManager` parameter, a component's
//! `field_manager`, else the client's user-agent program), and the entry of that manager,
//! operation and subresource gets the fields the write set or changed (`FieldsV1`), its
//! apiVersion and time. Fields a write takes over leave the other managers' entries; an entry
//! left with no field goes.
//!
//! Bosun tracks fields three levels deep (`f:spec` / `f:template` / `f:metadata`), with lists
//! as atomic values, where Kubernetes' structured-merge-diff goes down to every leaf and into
//! lists by merge key. Server-owned metadata (uid, resourceVersion, generation,
//! creationTimestamp, managedFields) is never tracked; the status belongs to status writes
//! only (Kubernetes' reset fields of kinds with a status subresource).

use serde_json::{Map, Value, json};

/// The longest field manager name (Kubernetes' limit).
pub const MAX_FIELD_MANAGER: usize = 128;

/// Tracked depth: `f:spec` (1) / `f:replicas` (2) / one more level (3).
const DEPTH: usize = 3;

/// Metadata fields that belong to the server, never to a manager.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// A field manager's name, inline so that write options stay `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldManager {
    len: u8,
    bytes: [u8; MAX_FIELD_MANAGER],
}

impl Default for FieldManager {
    fn default() -> Self {
        FieldManager {
            len: 0,
            bytes: [0; MAX_FIELD_MANAGER],
        }
    }
}

impl std::fmt::Debug for FieldManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl FieldManager {
    /// `name`, or `None` when longer than [`MAX_FIELD_MANAGER`] bytes.
    pub fn new(name: &str) -> Option<FieldManager> {
        let len = u8::try_from(name.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_FIELD_MANAGER)?;
        let mut bytes = [0; MAX_FIELD_MANAGER];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(FieldManager { len, bytes })
    }

    /// kube-apiserver's default when a request names no manager: the user agent's program
    /// (`kubectl/v1.32.0 (linux/amd64) ...` gives `kubectl`), cut to the limit.
    pub fn from_user_agent(user_agent: &str) -> FieldManager {
        let program = user_agent.split('/').next().unwrap_or("").trim();
        let mut end = program.len().min(MAX_FIELD_MANAGER);
        while !program.is_char_boundary(end) {
            end -= 1;
        }
        FieldManager::new(&program[..end]).unwrap_or_default()
    }

    /// The name ("" when none).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// Whether there is no name (nothing is recorded then).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The fields set in `new` and not equal in `old` (all of `new`'s on create), as `FieldsV1`.
pub fn touched(old: Option<&Value>, new: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(new) = new.as_object() else {
        return out;
    };
    let old = old.and_then(Value::as_object);
    for (k, v) in new {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let prev = old.and_then(|o| o.get(k));
        let set = if k == "metadata" {
            let stripped = |m: &Value| -> Value {
                let mut m = m.as_object().cloned().unwrap_or_default();
                for s in SERVER_METADATA {
                    m.remove(*s);
                }
                Value::Object(m)
            };
            let now = stripped(v);
            if now.as_object().is_some_and(Map::is_empty) && prev.is_none() {
                continue;
            }
            diff(prev.map(stripped).as_ref(), &now, 2)
        } else {
            diff(prev, v, 2)
        };
        if let Some(set) = set {
            out.insert(format!("f:{k}"), set);
        }
    }
    out
}

/// The field set of `new` where it differs from `prev`, tracked to `DEPTH`; `None` when equal.
fn diff(prev: Option<&Value>, new: &Value, depth: usize) -> Option<Value> {
    if prev == Some(new) || new.is_null() {
        return None;
    }
    let Some(obj) = new.as_object().filter(|_| depth <= DEPTH) else {
        return Some(json!({}));
    };
    let prev_obj = prev.and_then(Value::as_object);
    if obj.is_empty() && prev_obj.is_none() {
        // A new empty map: a leaf.
        return Some(json!({}));
    }
    let mut set = Map::new();
    if prev_obj.is_none() && depth >= 3 {
        // A nested map itself was created (Kubernetes marks it with "."; the object's own
        // top-level structs are not marked).
        set.insert(".".into(), json!({}));
    }
    for (k, v) in obj {
        if let Some(s) = diff(prev_obj.and_then(|p| p.get(k)), v, depth + 1) {
            set.insert(format!("f:{k}"), s);
        }
    }
    if set.is_empty() {
        // Only removals: the map changed as a whole.
        set.insert(".".into(), json!({}));
    }
    Some(Value::Object(set))
}

/// `a` with every leaf of `b` added.
fn union(a: &mut Map<String, Value>, b: &Map<String, Value>) {
    for (k, v) in b {
        match (a.get_mut(k), v.as_object()) {
            (Some(Value::Object(existing)), Some(sub)) => union(existing, sub),
            (None, _) | (Some(_), None) => {
                a.insert(k.clone(), v.clone());
            }
            (Some(_), Some(_)) => {
                a.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `a` without the fields `b` owns: a leaf of `b` removes the field and all below it.
fn subtract(a: &mut Map<String, Value>, b: &Map<String, Value>) {
    for (k, v) in b {
        if k == "." {
            continue;
        }
        let sub = v.as_object().filter(|s| s.keys().any(|k| k != "."));
        match sub {
            None => {
                a.remove(k);
            }
            Some(sub) => {
                if let Some(Value::Object(existing)) = a.get_mut(k) {
                    subtract(existing, sub);
                    if existing.is_empty() || existing.keys().all(|k| k == ".") {
                        a.remove(k);
                    }
                }
            }
        }
    }
}

/// Records an `Update` by `manager` on `subresource` ("" or "status") that turned `old`
/// (`None` on create) into `new`: `new`'s `metadata.managedFields` start from `old`'s, the
/// manager's entry gains the touched fields with `time`, and other entries lose them.
pub fn record(
    new: &mut Value,
    old: Option<&Value>,
    manager: FieldManager,
    subresource: &str,
    time: &str,
) {
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !manager.is_empty() {
        let mut set = touched(old, new);
        // As the kinds' reset fields in Kubernetes: a write of the object does not own the
        // status the server sets, and a status write owns only the status.
        if subresource.is_empty() {
            set.remove("f:status");
        } else if subresource == "status" {
            set.retain(|k, _| k == "f:status");
        }
        if !set.is_empty() {
            let api_version = new.get("apiVersion").cloned().unwrap_or(Value::Null);
            let mine = |e: &Value| {
                e.get("manager").and_then(Value::as_str) == Some(manager.as_str())
                    && e.get("operation").and_then(Value::as_str) == Some("Update")
                    && e.get("subresource").and_then(Value::as_str).unwrap_or("") == subresource
            };
            for e in entries.iter_mut().filter(|e| !mine(e)) {
                if let Some(Value::Object(fields)) = e.get_mut("fieldsV1") {
                    subtract(fields, &set);
                }
            }
            entries.retain(|e| {
                mine(e)
                    || e.get("fieldsV1")
                        .and_then(Value::as_object)
                        .is_some_and(|f| !f.is_empty())
            });
            match entries.iter_mut().find(|e| mine(e)) {
                Some(e) => {
                    let mut fields = e
                        .get("fieldsV1")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    union(&mut fields, &set);
                    e["fieldsV1"] = Value::Object(fields);
                    e["time"] = json!(time);
                    e["apiVersion"] = api_version;
                }
                None => {
                    let mut e = json!({
                        "manager": manager.as_str(),
                        "operation": "Update",
                        "apiVersion": api_version,
                        "time": time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": set,
                    });
                    if !subresource.is_empty() {
                        e["subresource"] = json!(subresource);
                    }
                    entries.push(e);
                }
            }
        }
    }
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:01:00Z";

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5",
                         "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
        })
    }

    fn manager(name: &str) -> FieldManager {
        FieldManager::new(name).unwrap()
    }

    #[test]
    fn names_are_bounded_and_default_to_the_user_agent_program() {
        assert_eq!(manager("kubectl-create").as_str(), "kubectl-create");
        assert!(FieldManager::new(&"x".repeat(129)).is_none());
        assert_eq!(
            FieldManager::new(&"x".repeat(128)).unwrap().as_str().len(),
            128
        );
        assert_eq!(
            FieldManager::from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abc").as_str(),
            "kubectl"
        );
        assert!(FieldManager::from_user_agent("").is_empty());
        assert!(FieldManager::default().is_empty());
    }

    #[test]
    fn a_create_owns_every_field_it_set_but_server_metadata() {
        let mut d = deployment(3, "nginx:1");
        // What the server set in the status is not the creator's.
        d["status"] = json!({"replicas": 0});
        record(&mut d, None, manager("kubectl-create"), "", T1);
        let mf = &d["metadata"]["managedFields"];
        assert_eq!(mf.as_array().unwrap().len(), 1);
        assert_eq!(mf[0]["manager"], "kubectl-create");
        assert_eq!(mf[0]["operation"], "Update");
        assert_eq!(mf[0]["apiVersion"], "apps/v1");
        assert_eq!(mf[0]["time"], T1);
        assert_eq!(mf[0]["fieldsType"], "FieldsV1");
        assert!(mf[0].get("subresource").is_none());
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {".": {}, "f:matchLabels": {}},
                    "f:template": {".": {}, "f:spec": {}},
                },
            })
        );
    }

    #[test]
    fn an_update_moves_the_fields_it_changes_to_its_manager() {
        let mut created = deployment(3, "nginx:1");
        record(&mut created, None, manager("kubectl-create"), "", T1);
        let mut scaled = deployment(5, "nginx:1");
        record(
            &mut scaled,
            Some(&created),
            manager("bosun-controller-manager"),
            "",
            T2,
        );
        let mf = scaled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[1]["manager"], "bosun-controller-manager");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(
            mf[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
            "taken from the creator: {}",
            mf[0]
        );
        assert_eq!(mf[0]["time"], T1, "the creator's entry keeps its time");

        // A status write is its own entry.
        let mut with_status = scaled.clone();
        with_status["status"] = json!({"replicas": 5});
        record(
            &mut with_status,
            Some(&scaled),
            manager("bosun-controller-manager"),
            "status",
            T2,
        );
        let mf = with_status["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 3);
        assert_eq!(mf[2]["subresource"], "status");
        assert_eq!(mf[2]["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));

        // The same manager again: one entry, the union, the new time.
        let mut again = with_status.clone();
        again["spec"]["replicas"] = json!(2);
        again["metadata"]["labels"]["tier"] = json!("web");
        record(
            &mut again,
            Some(&with_status),
            manager("bosun-controller-manager"),
            "",
            "T3",
        );
        let mf = again["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 3);
        assert_eq!(mf[1]["time"], "T3");
        assert_eq!(
            mf[1]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {"f:tier": {}}}})
        );
    }

    #[test]
    fn an_entry_left_without_fields_goes_and_no_manager_records_nothing() {
        let mut a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1"}});
        record(&mut a, None, manager("one"), "", T1);
        let mut b = a.clone();
        b["data"] = json!({"k": "2"});
        record(&mut b, Some(&a), manager("two"), "", T2);
        let mf = b["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1, "{mf:?}");
        assert_eq!(mf[0]["manager"], "two");
        // A write with no manager keeps the entries as they were.
        let mut c = b.clone();
        c["data"] = json!({"k": "3"});
        record(&mut c, Some(&b), FieldManager::default(), "", T2);
        assert_eq!(
            c["metadata"]["managedFields"],
            b["metadata"]["managedFields"]
        );
    }
}
