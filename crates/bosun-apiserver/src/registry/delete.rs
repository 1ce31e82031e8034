//! Delete, as Kubernetes does it: `DeleteOptions` (preconditions on uid and
//! resourceVersion, the propagation policy, a grace period), finalizers (the policy
//! recorded as the `orphan` or `foregroundDeletion` finalizer for the garbage collector),
//! graceful deletion of pods on nodes, the namespace lifecycle, and delete-collection.
//! An object with finalizers or a grace period is only marked (`deletionTimestamp`); it is
//! removed when its last finalizer goes (see `update.rs`).

use bosun_api::meta::{finalizers, meta_str, now_rfc3339, rfc3339, set_resource_version};
use serde_json::{Value, json};

use super::get_list::ListOptions;
use super::store::Store;
use super::{CAS_RETRIES, Registry, WriteOptions, go_json_type, meta_mut, parse_rv, string_field};
use crate::error::{ApiResult, Status};
use crate::kinds::Kind;

/// What a delete did.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The object as deleted, or as it is now while deletion is pending.
    pub object: Value,
    /// True when it is gone from the store.
    pub gone: bool,
}

/// The time `secs` from now, as Kubernetes writes it.
fn rfc3339_after(secs: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    rfc3339(t)
}

/// `DeleteOptions`, read once per request and checked against each object before it is
/// deleted.
#[derive(Debug, Clone, Default)]
struct DeleteOptions {
    grace_period: Option<i64>,
    policy: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads and validates the options (400 for a malformed or unsupported value).
    fn parse(options: &Value) -> ApiResult<DeleteOptions> {
        if !options.is_object() {
            return Err(Status::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type v1.DeleteOptions",
                go_json_type(options)
            )));
        }
        let grace_period = match options.get("gracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                Status::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.gracePeriodSeconds of type int64",
                    go_json_type(v)
                ))
            })?),
        };
        let policy = match string_field(options, "propagationPolicy", "DeleteOptions")? {
            "" => match options.get("orphanDependents") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(o)) => Some(if *o { "Orphan" } else { "Background" }.to_string()),
                Some(v) => {
                    return Err(Status::bad_request(format!(
                        "json: cannot unmarshal {} into Go struct field DeleteOptions.orphanDependents of type bool",
                        go_json_type(v)
                    )));
                }
            },
            p => Some(p.to_string()),
        };
        match policy.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => {}
            Some(other) => {
                return Err(Status::bad_request(format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        let pre = match options.get("preconditions") {
            None | Some(Value::Null) => &Value::Null,
            Some(p @ Value::Object(_)) => p,
            Some(other) => {
                return Err(Status::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.preconditions of type v1.Preconditions",
                    go_json_type(other)
                )));
            }
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(DeleteOptions {
            grace_period,
            policy,
            uid: some(string_field(pre, "uid", "Preconditions")?),
            resource_version: some(string_field(pre, "resourceVersion", "Preconditions")?),
        })
    }

    /// Whether `obj` (at revision `rev`) may be deleted with these options: its kind allows
    /// it (not a protected namespace), and its preconditions hold.
    fn check(&self, kind: &dyn Kind, name: &str, obj: &Value, rev: i64) -> ApiResult<()> {
        let res = kind.resource();
        kind.check_delete(name)?;
        if let Some(uid) = &self.uid {
            let have = meta_str(obj, "uid");
            if uid != have {
                return Err(Status::conflict_msg(
                    res,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    ),
                ));
            }
        }
        if let Some(rv) = &self.resource_version
            && parse_rv(rv)? != Some(rev)
        {
            return Err(Status::conflict_msg(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
        Ok(())
    }
}

impl<S: Store> Registry<S> {
    /// Deletes an object, as Kubernetes does: preconditions, finalizers (with the
    /// propagation policy recorded as `orphan`/`foregroundDeletion`), graceful pod deletion.
    pub async fn delete(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Deleted> {
        let options = DeleteOptions::parse(options)?;
        self.delete_parsed(kind, ns, name, &options, opts).await
    }

    async fn delete_parsed(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
        opts: WriteOptions,
    ) -> ApiResult<Deleted> {
        let res = kind.resource();
        let ns = if res.namespaced { ns } else { "" };
        let grace_opt = options.grace_period;
        let policy = options.policy.clone();
        for _ in 0..CAS_RETRIES {
            let cur = self.read_existing(res, ns, name).await?;
            options.check(kind, name, &cur.obj, cur.rev)?;
            let mut obj = cur.obj.clone();
            let mut fins = finalizers(&obj);
            let already_deleting = !meta_str(&obj, "deletionTimestamp").is_empty();
            let policy_finalizer = match policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = policy_finalizer {
                if !fins.iter().any(|x| x == f) {
                    fins.push(f.to_string());
                }
                fins.retain(|x| x == f || (x != "orphan" && x != "foregroundDeletion"));
            }
            let grace = kind.deletion_grace(&obj, grace_opt);
            // A namespace is only marked by the first delete and stays while
            // `spec.finalizers` holds it (the namespace controller empties it).
            let terminating = kind.begin_termination(&mut obj);
            if grace == 0 && fins.is_empty() && !terminating {
                if opts.dry_run {
                    return Ok(Deleted {
                        object: obj,
                        gone: true,
                    });
                }
                match self.swap(res, ns, name, cur.rev, &mut obj, true).await? {
                    Some(rev) => {
                        set_resource_version(&mut obj, rev);
                        return Ok(Deleted {
                            object: obj,
                            gone: true,
                        });
                    }
                    None => continue,
                }
            }
            // Deletion pending: mark it, keep the object.
            let m = meta_mut(&mut obj)?;
            if !fins.is_empty() {
                m.insert("finalizers".into(), json!(fins));
            }
            let deadline = if grace > 0 {
                rfc3339_after(grace)
            } else {
                now_rfc3339()
            };
            let shorter = m
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| grace < g);
            if !already_deleting || shorter {
                m.insert("deletionTimestamp".into(), json!(deadline));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if obj == cur.obj {
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
            if let Some(rev) = self.swap(res, ns, name, cur.rev, &mut obj, false).await? {
                set_resource_version(&mut obj, rev);
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
        }
        Err(Status::conflict(res, name))
    }

    /// Deletes every matching object in a collection; returns what was deleted or marked.
    ///
    /// A refused request changes nothing: the options are checked, and then every listed
    /// object against them (protected namespaces, preconditions), before the first delete.
    /// Only an object changed by someone else between the check and its delete can still
    /// fail part-way, as in Kubernetes, whose delete-collection is not atomic either.
    pub async fn delete_collection(
        &self,
        kind: &dyn Kind,
        ns: Option<&str>,
        list: &ListOptions,
        options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<Value>> {
        if !kind.resource().delete_collection {
            return Err(Status::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let options = DeleteOptions::parse(options)?;
        let page = self.list(kind, ns, list).await?;
        for item in &page.items {
            let rev = parse_rv(meta_str(item, "resourceVersion"))?.unwrap_or(0);
            options.check(kind, meta_str(item, "name"), item, rev)?;
        }
        let mut out = Vec::with_capacity(page.items.len());
        for item in page.items {
            let name = meta_str(&item, "name").to_string();
            let ins = meta_str(&item, "namespace").to_string();
            match self.delete_parsed(kind, &ins, &name, &options, opts).await {
                Ok(d) => out.push(d.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
