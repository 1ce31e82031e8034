//! OpenAPI v3: one document per served group-version, with the schemas of the `k8s-openapi`
//! types (their Kubernetes names and descriptions), so `kubectl explain` works. Each served
//! collection has a `get` operation naming its kind (which is how kubectl explain finds it);
//! there are no write operations, so kubectl does not infer anything about request parameters.

use std::sync::OnceLock;

use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::rest::{KUBE_MAJOR, KUBE_MINOR};
use bosun_api::resources::groups;

use crate::kinds;

/// `api/v1` or `apis/<group>/<version>`: the path of a group-version's document.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn build(group: &str, version: &str) -> Option<Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut served = Vec::new();
    // kubectl explain finds a resource's kind through the operations on its path.
    let mut paths = serde_json::Map::new();
    let prefix = format!("/{}", gv_path(group, version));
    for kind in kinds::all().filter(|k| {
        let r = k.resource();
        r.group == group && r.version == version
    }) {
        let r = kind.resource();
        let name = kind.add_openapi_schema(&mut generator);
        served.push((name, r.kind));
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(
            path,
            json!({"get": {
                "description": format!("list or watch objects of kind {}", r.kind),
                "x-kubernetes-group-version-kind": {"group": group, "kind": r.kind, "version": version},
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    if served.is_empty() {
        return None;
    }
    let mut schemas = generator.take_definitions(true);
    for (name, kind) in served {
        if let Some(Value::Object(s)) = schemas.get_mut(&name) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "kind": kind, "version": version}]),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The served group-versions with their documents, built once.
fn documents() -> &'static Vec<(String, Value)> {
    static DOCS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut gvs = vec![("", "v1")];
        gvs.extend(groups());
        gvs.into_iter()
            .filter_map(|(g, v)| build(g, v).map(|d| (gv_path(g, v), d)))
            .collect()
    })
}

/// `GET /openapi/v3`: where each group-version's document is.
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, _) in documents() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={KUBE_MAJOR}.{KUBE_MINOR}-{}", env!("CARGO_PKG_VERSION"))}),
        );
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<path>`: one group-version's document.
pub fn document(path: &str) -> Option<&'static Value> {
    documents()
        .iter()
        .find(|(p, _)| p == path.trim_matches('/'))
        .map(|(_, d)| d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_kinds_and_resolvable_refs() {
        let idx = index();
        for p in ["api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1"] {
            assert!(
                idx["paths"][p]["serverRelativeURL"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("/openapi/v3/{p}?hash="))
            );
        }
        let core = document("api/v1").unwrap();
        let schemas = core["components"]["schemas"].as_object().unwrap();
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(
            pod["description"]
                .as_str()
                .unwrap()
                .starts_with("Pod is a collection of containers")
        );
        // Every reference points into components.schemas.
        let text = core.to_string();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = r.split('"').next().unwrap();
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "dangling {target}");
        }
        let apps = document("apis/apps/v1").unwrap();
        assert_eq!(
            apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
                [0]["group"],
            "apps"
        );
        assert!(document("apis/batch/v1").is_none());
    }
}
