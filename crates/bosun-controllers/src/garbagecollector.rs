//! The garbage collector's decisions (`pkg/controller/garbagecollector/garbagecollector.go`),
//! as pure functions of an object's metadata and its owners' states.
//!
//! - [`attempt_to_delete`] is `attemptToDeleteItem` for a dependent: with a live ("solid")
//!   owner it only drops references to owners that are gone or deleting in the foreground;
//!   with none it is deleted, in the foreground when an owner waits for its dependents and
//!   it has dependents of its own, else as its own finalizers say (background by default).
//! - [`finalize`] is `processDeletingDependentsItem` and `orphanDependents` for an owner
//!   being deleted with the `foregroundDeletion` or `orphan` finalizer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The finalizer of a foreground deletion (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN: &str = "orphan";

/// An owner reference's owner, as the collector finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists (with the uid referenced) and is not being deleted in the foreground.
    Solid,
    /// Gone, or replaced by a namesake with another uid.
    Dangling,
    /// Being deleted in the foreground: it waits for its dependents to go.
    WaitingForDependents,
}

/// A deletion's propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; dependents are collected afterwards.
    Background,
    /// Delete dependents first (the object keeps the `foregroundDeletion` finalizer).
    Foreground,
    /// Keep dependents, without their reference to this object.
    Orphan,
}

impl Propagation {
    /// The `propagationPolicy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// What to do with a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it.
    Nothing,
    /// Drop its references to these owner uids (it has a live owner besides).
    RemoveOwnerReferences(Vec<String>),
    /// Delete it with this policy.
    Delete(Propagation),
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// `attemptToDeleteItem`: `owners` are the states of the owners `item`'s references name,
/// in order; `has_dependents` whether anything references `item` in turn.
pub fn attempt_to_delete(
    item: &ObjectMeta,
    owners: &[(&str, OwnerState)],
    has_dependents: bool,
) -> Decision {
    if item.deletion_timestamp.is_some() && !has_finalizer(item, FOREGROUND) {
        // Already being deleted; its own finalizers decide what happens next.
        return Decision::Nothing;
    }
    if owners.is_empty() {
        return Decision::Nothing;
    }
    let uids = |state: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(u, _)| u.to_string())
            .collect()
    };
    let dangling = uids(OwnerState::Dangling);
    let waiting = uids(OwnerState::WaitingForDependents);
    if owners.iter().any(|(_, s)| *s == OwnerState::Solid) {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Nothing;
        }
        // References to owners being deleted in the foreground must go too, or those
        // owners would wait for this object forever.
        return Decision::RemoveOwnerReferences([dangling, waiting].concat());
    }
    if !waiting.is_empty() && has_dependents {
        return Decision::Delete(Propagation::Foreground);
    }
    Decision::Delete(if has_finalizer(item, ORPHAN) {
        Propagation::Orphan
    } else if has_finalizer(item, FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    })
}

/// What an owner being deleted with a finalizer of the collector's needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Nothing for the collector (not being deleted, or no such finalizer).
    Nothing,
    /// Strip the reference to the owner from these dependents (indexes into the list
    /// given), then drop the `orphan` finalizer.
    Orphan(Vec<usize>),
    /// These dependents (indexes) block the owner's deletion: delete them first (those not
    /// already deleting their own dependents).
    DeleteDependents(Vec<usize>),
    /// No dependent is left to wait for: drop this finalizer (the apiserver then removes
    /// the owner once no finalizer is left).
    RemoveFinalizer(&'static str),
}

/// `processDeletingDependentsItem` / `orphanDependents` for `owner`, whose dependents (the
/// objects that reference its uid) are `dependents`.
pub fn finalize(owner: &ObjectMeta, dependents: &[&ObjectMeta]) -> Finalize {
    if owner.deletion_timestamp.is_none() {
        return Finalize::Nothing;
    }
    let uid = owner.uid.as_deref().unwrap_or("");
    if has_finalizer(owner, ORPHAN) {
        let referencing: Vec<usize> = (0..dependents.len())
            .filter(|&i| {
                dependents[i]
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid)
            })
            .collect();
        return if referencing.is_empty() {
            Finalize::RemoveFinalizer(ORPHAN)
        } else {
            Finalize::Orphan(referencing)
        };
    }
    if has_finalizer(owner, FOREGROUND) {
        let blocking: Vec<usize> = (0..dependents.len())
            .filter(|&i| {
                dependents[i]
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .collect();
        return if blocking.is_empty() {
            Finalize::RemoveFinalizer(FOREGROUND)
        } else {
            Finalize::DeleteDependents(blocking)
        };
    }
    Finalize::Nothing
}

/// The merge patch that drops `finalizer` from `meta`, conditional on its resourceVersion.
pub fn remove_finalizer_patch(meta: &ObjectMeta, finalizer: &str) -> serde_json::Value {
    let rest: Vec<&String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    serde_json::json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": meta.resource_version,
    }})
}

/// The strategic merge patch that drops the references to these owner uids
/// (`deleteOwnerRefStrategicMergePatch`), guarded by the object's uid.
pub fn remove_owner_references_patch(object_uid: &str, owner_uids: &[String]) -> serde_json::Value {
    let refs: Vec<serde_json::Value> = owner_uids
        .iter()
        .map(|u| serde_json::json!({"$patch": "delete", "uid": u}))
        .collect();
    serde_json::json!({"metadata": {"ownerReferences": refs, "uid": object_uid}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ts;
    use OwnerState::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::json;

    fn meta(finalizers: &[&str], deleting: bool) -> ObjectMeta {
        ObjectMeta {
            uid: Some("me".into()),
            resource_version: Some("7".into()),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            deletion_timestamp: deleting.then(|| Time(ts(1))),
            ..Default::default()
        }
    }

    fn dependent(owner: &str, block: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: owner.into(),
                block_owner_deletion: Some(block),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    // garbagecollector_test.go TestAttemptToDeleteItem and the classify cases.
    #[test]
    fn dependents_go_when_no_owner_is_left() {
        let m = meta(&[], false);
        assert_eq!(attempt_to_delete(&m, &[], false), Decision::Nothing);
        assert_eq!(
            attempt_to_delete(&m, &[("a", Solid)], false),
            Decision::Nothing
        );
        assert_eq!(
            attempt_to_delete(
                &m,
                &[("a", Solid), ("b", Dangling), ("c", WaitingForDependents)],
                false
            ),
            Decision::RemoveOwnerReferences(vec!["b".into(), "c".into()])
        );
        assert_eq!(
            attempt_to_delete(&m, &[("a", Dangling)], true),
            Decision::Delete(Propagation::Background)
        );
        assert_eq!(
            attempt_to_delete(&m, &[("a", WaitingForDependents)], true),
            Decision::Delete(Propagation::Foreground)
        );
        assert_eq!(
            attempt_to_delete(&m, &[("a", WaitingForDependents)], false),
            Decision::Delete(Propagation::Background)
        );
        assert_eq!(
            attempt_to_delete(&meta(&[ORPHAN], false), &[("a", Dangling)], false),
            Decision::Delete(Propagation::Orphan)
        );
        // Already being deleted (not in the foreground): left to its finalizers.
        assert_eq!(
            attempt_to_delete(&meta(&["x"], true), &[("a", Dangling)], false),
            Decision::Nothing
        );
    }

    #[test]
    fn owners_finish_once_their_dependents_are_handled() {
        let live = meta(&[FOREGROUND], false);
        assert_eq!(finalize(&live, &[]), Finalize::Nothing);
        let fg = meta(&[FOREGROUND], true);
        let (blocking, free, other) = (
            dependent("me", true),
            dependent("me", false),
            dependent("x", true),
        );
        assert_eq!(
            finalize(&fg, &[&free, &blocking, &other]),
            Finalize::DeleteDependents(vec![1])
        );
        assert_eq!(
            finalize(&fg, &[&free]),
            Finalize::RemoveFinalizer(FOREGROUND)
        );
        let orphaning = meta(&[ORPHAN, "keep"], true);
        assert_eq!(
            finalize(&orphaning, &[&other, &free]),
            Finalize::Orphan(vec![1])
        );
        assert_eq!(
            finalize(&orphaning, &[&other]),
            Finalize::RemoveFinalizer(ORPHAN)
        );
        assert_eq!(
            remove_finalizer_patch(&orphaning, ORPHAN),
            json!({"metadata": {"finalizers": ["keep"], "resourceVersion": "7"}})
        );
        assert_eq!(
            remove_owner_references_patch("d1", &["me".into()]),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "me"}], "uid": "d1"}})
        );
    }
}
