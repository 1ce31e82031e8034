//! `ControllerExpectations` + `UIDTrackingControllerExpectations`
//! (`pkg/controller/controller_utils.go`) as a plain state type.
//!
//! A controller that asked for N creations (or these deletions) does not act on the same
//! object again until its cache has seen them all, or until the expectations are older than
//! [`EXPECTATIONS_TIMEOUT`]: acting on a cache that has not caught up would create or delete
//! twice. Entries are per controller key and removed with [`Expectations::delete`] when the
//! controller goes; deletions tracked per key are bounded by the burst of one sync.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

/// How long unmet expectations hold a controller back (`ExpectationsTimeout`, 5 minutes).
pub const EXPECTATIONS_TIMEOUT: SignedDuration = SignedDuration::from_secs(5 * 60);

#[derive(Debug, Clone)]
struct Entry {
    add: i64,
    del: i64,
    timestamp: Timestamp,
}

/// Outstanding creations and deletions per controller key.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    entries: HashMap<String, Entry>,
    deletions: HashMap<String, HashSet<String>>,
}

impl Expectations {
    /// An empty set of expectations.
    pub fn new() -> Self {
        Self::default()
    }

    /// `SatisfiedExpectations`: whether the controller may sync: no expectations, all met,
    /// or expired.
    pub fn satisfied(&self, key: &str, now: Timestamp) -> bool {
        match self.entries.get(key) {
            None => true,
            Some(e) => {
                (e.add <= 0 && e.del <= 0) || now.duration_since(e.timestamp) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// `ExpectCreations`: replaces the key's expectations with `n` creations.
    pub fn expect_creations(&mut self, key: &str, n: usize, now: Timestamp) {
        self.set(key, n as i64, 0, now);
    }

    /// `ExpectDeletions`: replaces the key's expectations with the deletion of these pods.
    pub fn expect_deletions(&mut self, key: &str, pod_keys: &[String], now: Timestamp) {
        let set: HashSet<String> = pod_keys.iter().cloned().collect();
        let n = set.len() as i64;
        self.deletions.insert(key.to_string(), set);
        self.set(key, 0, n, now);
    }

    fn set(&mut self, key: &str, add: i64, del: i64, now: Timestamp) {
        self.entries.insert(
            key.to_string(),
            Entry {
                add,
                del,
                timestamp: now,
            },
        );
    }

    /// `CreationObserved`: one expected creation seen (or never attempted).
    pub fn creation_observed(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.add -= 1;
        }
    }

    /// `DeletionObserved`: the pod's deletion seen, counted once, and only for a pod this
    /// controller expected to delete.
    pub fn deletion_observed(&mut self, key: &str, pod_key: &str) {
        let Some(set) = self.deletions.get_mut(key) else {
            return;
        };
        if set.remove(pod_key)
            && let Some(e) = self.entries.get_mut(key)
        {
            e.del -= 1;
        }
    }

    /// `DeleteExpectations`: the controller is gone.
    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
        self.deletions.remove(key);
    }

    /// How many controllers have expectations (for a metric).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no controller has expectations.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ts;

    // controller_utils_test.go TestControllerExpectations.
    #[test]
    fn creations_hold_the_controller_until_observed_or_expired() {
        let mut e = Expectations::new();
        assert!(e.satisfied("rs", ts(0)), "no expectations: sync");
        e.expect_creations("rs", 2, ts(0));
        assert!(!e.satisfied("rs", ts(1)));
        e.creation_observed("rs");
        assert!(!e.satisfied("rs", ts(1)));
        e.creation_observed("rs");
        assert!(e.satisfied("rs", ts(1)));
        e.expect_creations("rs", 1, ts(10));
        assert!(
            !e.satisfied("rs", ts(10 + 300)),
            "exactly the timeout is not expired"
        );
        assert!(e.satisfied("rs", ts(10 + 301)), "expired");
    }

    // controller_utils_test.go TestUIDExpectations.
    #[test]
    fn deletions_count_each_expected_pod_once() {
        let mut e = Expectations::new();
        let keys = vec!["ns/a".to_string(), "ns/b".to_string()];
        e.expect_deletions("rs", &keys, ts(0));
        e.deletion_observed("rs", "ns/a");
        e.deletion_observed("rs", "ns/a");
        e.deletion_observed("rs", "ns/other");
        assert!(!e.satisfied("rs", ts(1)));
        e.deletion_observed("rs", "ns/b");
        assert!(e.satisfied("rs", ts(1)));
        e.delete("rs");
        assert!(e.is_empty());
    }
}
