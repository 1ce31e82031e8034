//! Create: the server's metadata (name from generateName, uid, creationTimestamp,
//! generation), the kind's create preparation, defaults and validation, the namespace check,
//! then one put on a key that must not exist. Events get a store lease, so they expire.

use std::time::{Duration, Instant};

use bosun_api::meta::{now_rfc3339, set_resource_version};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::store::{Created, Guard, Store};
use super::{CAS_RETRIES, Registry, WriteOptions, check_type, meta_mut};
use crate::error::{ApiResult, Status};
use crate::kinds::{Kind, Warnings};

/// How long one Event lease is reused for new events.
const LEASE_REUSE: Duration = Duration::from_secs(60);

/// Names tried for one generateName before giving up (each clash is a random collision).
const GENERATE_ATTEMPTS: usize = 8;

/// Grants store leases for Event objects, reusing one lease per minute (as Kubernetes does),
/// so events expire after `ttl` without a lease per event.
pub(super) struct EventLeases {
    ttl: Duration,
    current: Mutex<Option<(i64, Instant)>>,
}

impl EventLeases {
    pub(super) fn new(ttl: Duration) -> Self {
        EventLeases {
            ttl,
            current: Mutex::new(None),
        }
    }
}

/// Random suffix for generateName: Kubernetes' alphabet without vowels and confusables.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

impl<S: Store> Registry<S> {
    /// Creates an object in `ns` (ignored for cluster-scoped resources).
    pub async fn create(
        &self,
        kind: &dyn Kind,
        ns: &str,
        mut obj: Value,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        let res = kind.resource();
        check_type(res, &obj)?;
        let api_version = res.api_version();
        {
            let o = obj
                .as_object_mut()
                .ok_or_else(|| Status::bad_request("the object is not a JSON object"))?;
            o.insert("kind".into(), json!(res.kind));
            o.insert("apiVersion".into(), json!(api_version));
        }
        let m = meta_mut(&mut obj)?;
        if res.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(Status::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let generate = m
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let explicit = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for key in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(key);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if res.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if res.plural == "pods" && res.group.is_empty() {
            self.admission.admit_pod(&mut obj);
        }
        let ns = if res.namespaced { ns } else { "" };
        let attempts = if explicit.is_empty() && !generate.is_empty() {
            GENERATE_ATTEMPTS
        } else {
            1
        };
        // The namespace's revision, from the watch cache when it can tell (see namespace.rs);
        // a create is refused if the namespace changed since.
        let mut ns_rev = if res.namespaced {
            self.namespace_guess(ns)
        } else {
            None
        };
        let ns_key = self.key(&bosun_api::resources::NAMESPACES, "", ns);
        let mut tries = 0;
        let mut attempt = 0;
        while attempt < attempts && tries < CAS_RETRIES {
            tries += 1;
            let mut candidate = obj.clone();
            let name = if explicit.is_empty() && !generate.is_empty() {
                format!("{generate}{}", random_suffix())
            } else {
                explicit.clone()
            };
            meta_mut(&mut candidate)?.insert("name".into(), json!(name));
            kind.prepare_for_create(&mut candidate);
            let warnings = kind.decode_create(&mut candidate, opts.field_validation)?;
            super::managed::record(&mut candidate, None, opts.field_manager, "", &now_rfc3339());
            let guard_rev = match (res.namespaced, ns_rev) {
                (false, _) => None,
                (true, Some(rev)) => Some(rev),
                (true, None) => Some(self.namespace_check(res, ns, &name).await?),
            };
            let value =
                serde_json::to_vec(&candidate).map_err(|e| Status::internal(e.to_string()))?;
            self.limits.check_object(value.len())?;
            if opts.dry_run {
                return Ok((candidate, warnings));
            }
            let key = self.key(res, ns, &name);
            let lease = if kind.expires() {
                Some(self.event_lease().await?)
            } else {
                None
            };
            let guard = guard_rev.map(|revision| Guard {
                key: &ns_key,
                revision,
            });
            let announced = self.announce(res, &key, &value, &candidate);
            let created = self.store.create(&key, value, lease, guard).await;
            if !matches!(created, Ok(Created::At(_))) {
                self.withdraw(res, &key, announced);
            }
            match created? {
                Created::At(rev) => {
                    set_resource_version(&mut candidate, rev);
                    return Ok((candidate, warnings));
                }
                // The namespace changed since it was checked: check it again.
                Created::GuardChanged => ns_rev = None,
                Created::Exists if attempts == 1 => {
                    return Err(Status::already_exists(res, &name));
                }
                Created::Exists => attempt += 1,
            }
        }
        if attempt < attempts {
            // The namespace kept changing under every try.
            return Err(Status::conflict(res, &explicit));
        }
        Err(Status::already_exists(res, &generate))
    }

    async fn event_lease(&self) -> ApiResult<i64> {
        if let Some((id, at)) = *self.event_leases.current.lock()
            && at.elapsed() < LEASE_REUSE
        {
            return Ok(id);
        }
        let ttl = i64::try_from((self.event_leases.ttl + LEASE_REUSE).as_secs()).unwrap_or(3660);
        let id = self.store.grant_lease(ttl).await?;
        *self.event_leases.current.lock() = Some((id, Instant::now()));
        Ok(id)
    }

    /// Ensures an object exists (used for the built-in namespaces at start).
    pub async fn ensure(&self, kind: &dyn Kind, obj: Value) -> ApiResult<()> {
        match self.create(kind, "", obj, WriteOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
