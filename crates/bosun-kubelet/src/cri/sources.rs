//! What a pod reads from ConfigMaps and Secrets (pure): the names it refers to, the
//! environment variables they give (`env[].valueFrom.{configMapKeyRef,secretKeyRef}`,
//! `envFrom`) and the files of `configMap`, `secret` and `projected` volumes, with
//! Kubernetes' messages for what is missing. The runtime fetches the objects
//! ([`Sources`]) from the apiserver before a sandbox or a container is made.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret,
};

/// The ConfigMaps and Secrets of a pod's namespace that it refers to, by name, as fetched:
/// `None` for one the apiserver does not have.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Option<Secret>>,
}

/// Environment variables in order: name, value.
pub type Env = Vec<(String, String)>;

/// The files of downwardAPI items (relative path, content), as `convert` writes them.
pub type DownwardFiles<'a> =
    &'a dyn Fn(&[DownwardAPIVolumeFile]) -> Result<Vec<(String, String)>, String>;

/// One file of a volume: its path inside the volume, content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative, without `..`.
    pub path: String,
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// The names of the ConfigMaps and of the Secrets the pod refers to, in its containers'
/// env and envFrom and in its volumes.
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (cms, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|f| f.config_map_key_ref.as_ref())
            {
                cms.insert(r.name.clone());
            }
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            {
                secrets.insert(r.name.clone());
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &s.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(c) = &s.secret {
                secrets.insert(c.name.clone());
            }
        }
    }
    (cms, secrets)
}

impl Sources {
    /// The ConfigMap `name`: `Ok(None)` when it is missing and `optional`, the kubelet's
    /// not-found message when it is missing otherwise.
    fn config_map(&self, name: &str, optional: bool) -> Result<Option<&ConfigMap>, String> {
        match self.config_maps.get(name) {
            Some(Some(cm)) => Ok(Some(cm)),
            _ if optional => Ok(None),
            _ => Err(format!("configmap {name:?} not found")),
        }
    }

    /// The Secret `name`, as [`Self::config_map`].
    fn secret(&self, name: &str, optional: bool) -> Result<Option<&Secret>, String> {
        match self.secrets.get(name) {
            Some(Some(s)) => Ok(Some(s)),
            _ if optional => Ok(None),
            _ => Err(format!("secret {name:?} not found")),
        }
    }

    /// The environment `envFrom` gives the container, in order (later sources win), and
    /// the keys skipped as invalid variable names with the source they came from
    /// (Kubernetes' `InvalidEnvironmentVariableNames` event).
    pub fn env_from(&self, pod: &Pod, c: &Container) -> Result<(Env, Vec<String>), String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        let mut skipped = Vec::new();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.as_deref().unwrap_or_default();
            let (pairs, what, name): (Vec<(String, String)>, &str, &str) =
                if let Some(r) = &from.config_map_ref {
                    let cm = self.config_map(&r.name, r.optional == Some(true))?;
                    let pairs = cm
                        .and_then(|cm| cm.data.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    (pairs, "configMap", &r.name)
                } else if let Some(r) = &from.secret_ref {
                    let s = self.secret(&r.name, r.optional == Some(true))?;
                    let pairs = s
                        .and_then(|s| s.data.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    (pairs, "secret", &r.name)
                } else {
                    continue;
                };
            let mut invalid = Vec::new();
            for (k, v) in pairs {
                let key = format!("{prefix}{k}");
                if is_env_var_name(&key) {
                    out.insert(key, v);
                } else {
                    invalid.push(key);
                }
            }
            if !invalid.is_empty() {
                invalid.sort();
                skipped.push(format!(
                    "Keys [{}] from the EnvFrom {what} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", ")
                ));
            }
        }
        Ok((out.into_iter().collect(), skipped))
    }

    /// One `valueFrom` of a ConfigMap or Secret key: `Ok(None)` when it is optional and
    /// missing (the variable is left out), `None` too when `from` names neither.
    pub fn env_value(
        &self,
        pod: &Pod,
        from: &k8s_openapi::api::core::v1::EnvVarSource,
    ) -> Result<Option<String>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_key_ref {
            let optional = r.optional == Some(true);
            let Some(cm) = self.config_map(&r.name, optional)? else {
                return Ok(None);
            };
            return match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in ConfigMap {ns}/{}",
                    r.key, r.name
                )),
            };
        }
        if let Some(r) = &from.secret_key_ref {
            let optional = r.optional == Some(true);
            let Some(s) = self.secret(&r.name, optional)? else {
                return Ok(None);
            };
            return match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    r.key, r.name
                )),
            };
        }
        Ok(None)
    }

    /// The files of a ConfigMap's keys (`MakePayload`): every key of `data` and
    /// `binaryData`, or only `items`, each at its path.
    fn config_map_files(
        &self,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        default_mode: u32,
        optional: bool,
    ) -> Result<Vec<File>, String> {
        let Some(cm) = self.config_map(name, optional)? else {
            return Ok(Vec::new());
        };
        let mut keys: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            keys.insert(k, v.clone().into_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            keys.insert(k, v.0.clone());
        }
        payload(
            keys,
            items,
            default_mode,
            optional,
            "configmap references non-existent config key",
        )
    }

    /// The files of a Secret's keys, as [`Self::config_map_files`].
    fn secret_files(
        &self,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        default_mode: u32,
        optional: bool,
    ) -> Result<Vec<File>, String> {
        let Some(s) = self.secret(name, optional)? else {
            return Ok(Vec::new());
        };
        let keys = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.clone()))
            .collect();
        payload(
            keys,
            items,
            default_mode,
            optional,
            "secret references non-existent secret key",
        )
    }

    /// The files of the pod's volume `volume` when it is a `configMap`, `secret` or
    /// `projected` one (`None` for other kinds); `downward` gives a projection's
    /// downwardAPI files.
    pub fn volume_files(
        &self,
        pod: &Pod,
        volume: &str,
        downward: DownwardFiles<'_>,
    ) -> Option<Result<Vec<File>, String>> {
        let v = pod
            .spec
            .as_ref()?
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)?;
        let mode = |m: Option<i32>| u32::try_from(m.unwrap_or(0o644)).unwrap_or(0o644);
        if let Some(c) = &v.config_map {
            let files = self.config_map_files(
                &c.name,
                c.items.as_ref(),
                mode(c.default_mode),
                c.optional == Some(true),
            );
            return Some(files.and_then(checked));
        }
        if let Some(s) = &v.secret {
            let files = self.secret_files(
                s.secret_name.as_deref().unwrap_or_default(),
                s.items.as_ref(),
                mode(s.default_mode),
                s.optional == Some(true),
            );
            return Some(files.and_then(checked));
        }
        let p = v.projected.as_ref()?;
        let default_mode = mode(p.default_mode);
        let mut out = Vec::new();
        for s in p.sources.iter().flatten() {
            let files = if let Some(c) = &s.config_map {
                self.config_map_files(
                    &c.name,
                    c.items.as_ref(),
                    default_mode,
                    c.optional == Some(true),
                )
            } else if let Some(c) = &s.secret {
                self.secret_files(
                    &c.name,
                    c.items.as_ref(),
                    default_mode,
                    c.optional == Some(true),
                )
            } else if let Some(d) = &s.downward_api {
                downward(d.items.as_deref().unwrap_or_default()).map(|files| {
                    files
                        .into_iter()
                        .map(|(path, data)| File {
                            path,
                            data: data.into_bytes(),
                            mode: default_mode,
                        })
                        .collect()
                })
            } else {
                Err(format!(
                    "volume {volume:?}: only configMap, secret and downwardAPI projections are supported"
                ))
            };
            match files {
                Ok(f) => out.extend(f),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(checked(out))
    }
}

/// `MakePayload`: every key at its own name with `default_mode`, or each of `items` at its
/// path with its mode; a missing item key is an error unless the source is optional.
fn payload(
    keys: BTreeMap<&str, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    missing: &str,
) -> Result<Vec<File>, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(keys
            .into_iter()
            .map(|(k, data)| File {
                path: k.to_string(),
                data,
                mode: default_mode,
            })
            .collect());
    };
    let mut out = Vec::new();
    for it in items {
        match keys.get(it.key.as_str()) {
            Some(data) => out.push(File {
                path: it.path.clone(),
                data: data.clone(),
                mode: it
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode),
            }),
            None if optional => {}
            None => return Err(format!("{missing}: {}", it.key)),
        }
    }
    Ok(out)
}

/// The files, refused when a path would leave the volume.
fn checked(files: Vec<File>) -> Result<Vec<File>, String> {
    for f in &files {
        if f.path.is_empty() || f.path.starts_with('/') || f.path.split('/').any(|p| p == "..") {
            return Err(format!("path {:?} must be relative without '..'", f.path));
        }
    }
    Ok(files)
}

/// `IsEnvVarName`: letters, digits, '_', '-' and '.', not starting with a digit.
fn is_env_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": spec}),
        )
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"},
            "data": {"mode": "fast", "1bad": "x", "app.conf": "a=1\n"},
            "binaryData": {"blob": "AAE="}}))
        .unwrap();
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": "db"},
            "data": {"password": "czNjcmV0"}}))
        .unwrap();
        Sources {
            config_maps: BTreeMap::from([("cfg".into(), Some(cm)), ("gone".into(), None)]),
            secrets: BTreeMap::from([("db".into(), Some(s))]),
        }
    }

    #[test]
    fn the_names_a_pod_refers_to() {
        let p = pod(json!({"containers": [{"name": "c",
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
            "envFrom": [{"configMapRef": {"name": "more"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "tls"}},
                        {"name": "w", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}]}));
        let (cms, secrets) = referenced(&p);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cfg", "more", "proj"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["db", "tls"]);
    }

    #[test]
    fn env_values_and_env_from_with_kubernetes_messages() {
        let s = sources();
        let p = pod(json!({"containers": [{"name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "db"}}]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let (env, skipped) = s.env_from(&p, c).unwrap();
        assert_eq!(
            env,
            [
                ("CFG_1bad".to_string(), "x".to_string()),
                ("CFG_app.conf".into(), "a=1\n".into()),
                ("CFG_mode".into(), "fast".into()),
                ("password".into(), "s3cret".into())
            ]
        );
        assert!(skipped.is_empty());
        let p2 = pod(
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}),
        );
        let (_, skipped) = s
            .env_from(&p2, &p2.spec.as_ref().unwrap().containers[0])
            .unwrap();
        assert_eq!(
            skipped,
            [
                "Keys [1bad] from the EnvFrom configMap ns/cfg were skipped since they are considered invalid environment variable names."
            ]
        );

        let from = |v: serde_json::Value| serde_json::from_value(v).unwrap();
        assert_eq!(
            s.env_value(
                &p,
                &from(json!({"secretKeyRef": {"name": "db", "key": "password"}}))
            )
            .unwrap(),
            Some("s3cret".into())
        );
        assert_eq!(
            s.env_value(
                &p,
                &from(json!({"configMapKeyRef": {"name": "cfg", "key": "nope"}}))
            )
            .unwrap_err(),
            "couldn't find key nope in ConfigMap ns/cfg"
        );
        assert_eq!(
            s.env_value(
                &p,
                &from(json!({"configMapKeyRef": {"name": "gone", "key": "k"}}))
            )
            .unwrap_err(),
            "configmap \"gone\" not found"
        );
        assert_eq!(
            s.env_value(
                &p,
                &from(json!({"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}))
            )
            .unwrap(),
            None
        );
        let missing_secret = pod(
            json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}]}),
        );
        assert_eq!(
            s.env_from(
                &missing_secret,
                &missing_secret.spec.as_ref().unwrap().containers[0]
            )
            .unwrap_err(),
            "secret \"nope\" not found"
        );
    }

    #[test]
    fn volume_files_as_make_payload_writes_them() {
        let s = sources();
        let none = |_: &[DownwardAPIVolumeFile]| Ok(Vec::new());
        let p = pod(json!({"containers": [{"name": "c"}], "volumes": [
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "cfg", "items": [{"key": "mode", "path": "conf/mode", "mode": 0o400}]}},
            {"name": "missing-key", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
            {"name": "escape", "configMap": {"name": "cfg", "items": [{"key": "mode", "path": "../x"}]}},
            {"name": "sec", "secret": {"secretName": "db"}},
            {"name": "absent", "secret": {"secretName": "nope"}},
            {"name": "absent-ok", "secret": {"secretName": "nope", "optional": true}},
            {"name": "proj", "projected": {"sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "mode", "path": "mode"}]}},
                {"secret": {"name": "db"}}]}},
            {"name": "scratch", "emptyDir": {}}]}));
        let all = s.volume_files(&p, "all", &none).unwrap().unwrap();
        let paths: Vec<(&str, u32)> = all.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(
            paths,
            [
                ("1bad", 0o600),
                ("app.conf", 0o600),
                ("blob", 0o600),
                ("mode", 0o600)
            ]
        );
        assert_eq!(all[2].data, vec![0, 1]);
        assert_eq!(
            s.volume_files(&p, "some", &none).unwrap().unwrap(),
            [File {
                path: "conf/mode".into(),
                data: b"fast".to_vec(),
                mode: 0o400
            }]
        );
        assert_eq!(
            s.volume_files(&p, "missing-key", &none)
                .unwrap()
                .unwrap_err(),
            "configmap references non-existent config key: nope"
        );
        assert!(s.volume_files(&p, "escape", &none).unwrap().is_err());
        assert_eq!(
            s.volume_files(&p, "sec", &none).unwrap().unwrap()[0].data,
            b"s3cret"
        );
        assert_eq!(
            s.volume_files(&p, "absent", &none).unwrap().unwrap_err(),
            "secret \"nope\" not found"
        );
        assert!(
            s.volume_files(&p, "absent-ok", &none)
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let proj: Vec<String> = s
            .volume_files(&p, "proj", &none)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(proj, ["mode", "password"]);
        assert!(s.volume_files(&p, "scratch", &none).is_none());
    }
}
