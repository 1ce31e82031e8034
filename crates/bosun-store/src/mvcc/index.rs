//! The in-memory key index: for every key, the revisions at which it changed.
//!
//! Values live in RocksDB keyed by revision; this index answers "which revision of key K is
//! visible at revision R" without touching the disk. It is rebuilt from the revision-keyed
//! column family when a member starts, as etcd rebuilds its tree index.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// A point in the store's history: the main revision of a write request and the position of
/// one change inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rev {
    pub main: i64,
    pub sub: i64,
}

impl Rev {
    /// Length of [`Rev::to_key`].
    pub const KEY_LEN: usize = 16;

    pub fn new(main: i64, sub: i64) -> Self {
        Rev { main, sub }
    }

    /// Big-endian encoding, so RocksDB's byte order is revision order.
    pub fn to_key(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.main.to_be_bytes());
        k[8..].copy_from_slice(&self.sub.to_be_bytes());
        k
    }

    /// Decodes [`Rev::to_key`]; `None` for a malformed key.
    pub fn from_key(k: &[u8]) -> Option<Self> {
        if k.len() != Self::KEY_LEN {
            return None;
        }
        let main = i64::from_be_bytes(k[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[8..].try_into().ok()?);
        Some(Rev { main, sub })
    }
}

/// One change of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub rev: Rev,
    pub tombstone: bool,
}

/// The history of one key, oldest first, plus the facts of its live generation.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    pub changes: Vec<Change>,
    /// create_revision, version and lease of the live value (meaningful when it is live).
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl KeyHistory {
    /// The revision of the value visible at main revision `at`, if the key existed then.
    pub fn visible_at(&self, at: i64) -> Option<Rev> {
        let n = self.changes.partition_point(|c| c.rev.main <= at);
        let c = self.changes.get(n.checked_sub(1)?)?;
        (!c.tombstone).then_some(c.rev)
    }

    /// The revision of the live value, if the key exists now.
    pub fn live(&self) -> Option<Rev> {
        self.changes.last().filter(|c| !c.tombstone).map(|c| c.rev)
    }

    fn put(&mut self, rev: Rev, lease: i64) -> Put {
        // A live value has a version of 1 or more, a deleted key 0: the history's last change
        // (in another allocation, so a cache miss on this hot path) need not be read.
        debug_assert_eq!(self.version > 0, self.live().is_some());
        let old_lease = if self.version > 0 {
            self.lease
        } else {
            self.create_revision = rev.main;
            self.version = 0;
            0
        };
        self.version += 1;
        self.lease = lease;
        self.changes.push(Change {
            rev,
            tombstone: false,
        });
        Put {
            create_revision: self.create_revision,
            version: self.version,
            old_lease,
        }
    }
}

/// What [`Index::put`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    pub create_revision: i64,
    pub version: i64,
    /// The lease of the value replaced; 0 if none was live.
    pub old_lease: i64,
}

/// The key index. Keys are arbitrary bytes, ordered bytewise as etcd orders them.
///
/// Every applied write looks its key up here, on every member. A walk down a tree of keys
/// compares the key with a dozen or more others, each in its own heap allocation, so one
/// lookup costs as many cache misses (the largest single item of the apply path in put@256's
/// profile). Histories are therefore found by hash; the ordered set of the same keys serves
/// ranges.
#[derive(Debug, Default)]
pub struct Index {
    histories: HashMap<Arc<[u8]>, KeyHistory>,
    order: BTreeSet<Arc<[u8]>>,
}

/// A key range as etcd spells it: `end` empty = the single key; `end` = `[0]` = every key
/// `>= key`; otherwise `[key, end)`.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange<'a> {
    pub key: &'a [u8],
    pub end: &'a [u8],
}

/// Lower and upper bound of a key range over the index.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], end: &'a [u8]) -> Self {
        KeyRange { key, end }
    }

    /// Whether `k` falls in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            k == self.key
        } else if self.end == [0] {
            k >= self.key
        } else {
            k >= self.key && k < self.end
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'a>> {
        if self.end.is_empty() {
            Some((Bound::Included(self.key), Bound::Included(self.key)))
        } else if self.end == [0] {
            Some((Bound::Included(self.key), Bound::Unbounded))
        } else if self.end <= self.key {
            None
        } else {
            Some((Bound::Included(self.key), Bound::Excluded(self.end)))
        }
    }
}

impl Index {
    /// The history of one key.
    pub fn get(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.histories.get(key)
    }

    /// Keys in `range`, in key order, with their histories.
    pub fn range<'s>(
        &'s self,
        range: KeyRange<'_>,
    ) -> Box<dyn Iterator<Item = (&'s [u8], &'s KeyHistory)> + 's> {
        let found = |(k, h): (&'s Arc<[u8]>, &'s KeyHistory)| (&**k, h);
        if range.end.is_empty() {
            return Box::new(
                self.histories
                    .get_key_value(range.key)
                    .map(found)
                    .into_iter(),
            );
        }
        match range.bounds() {
            None => Box::new(std::iter::empty()),
            Some((lo, hi)) => Box::new(
                self.order
                    .range::<[u8], _>((lo, hi))
                    .filter_map(move |k| self.histories.get_key_value(&**k).map(found)),
            ),
        }
    }

    /// The history of `key`, created empty (and the key added to the order) if it has none.
    fn entry(&mut self, key: &[u8]) -> &mut KeyHistory {
        // A new key is copied once, into an allocation both collections share; a key that
        // exists is not copied.
        if !self.histories.contains_key(key) {
            let key: Arc<[u8]> = Arc::from(key);
            self.order.insert(key.clone());
            self.histories.insert(key.clone(), KeyHistory::default());
        }
        self.histories
            .get_mut(key)
            .expect("the key's history was just found or inserted")
    }

    /// Records a put of `key` at `rev`; returns the key's create revision and new version, and
    /// the lease of the value it replaces (0 when it was not live or had none).
    pub fn put(&mut self, key: &[u8], rev: Rev, lease: i64) -> Put {
        if let Some(h) = self.histories.get_mut(key) {
            return h.put(rev, lease);
        }
        self.entry(key).put(rev, lease)
    }

    /// Records a delete of a live `key` at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Rev) {
        if let Some(h) = self.histories.get_mut(key) {
            h.changes.push(Change {
                rev,
                tombstone: true,
            });
            h.version = 0;
            h.lease = 0;
        }
    }

    /// Replays a stored change while rebuilding the index at start-up.
    pub fn restore(
        &mut self,
        key: &[u8],
        change: Change,
        create_revision: i64,
        version: i64,
        lease: i64,
    ) {
        let h = self.entry(key);
        h.changes.push(change);
        if change.tombstone {
            h.version = 0;
            h.lease = 0;
        } else {
            h.create_revision = create_revision;
            h.version = version;
            h.lease = lease;
        }
    }

    /// Drops every change that no read at a revision `>= at` can see, and returns the
    /// revisions whose stored values may be deleted.
    pub fn compact(&mut self, at: i64) -> Vec<Rev> {
        let mut dropped = Vec::new();
        let mut gone = Vec::new();
        self.histories.retain(|k, h| {
            // Changes at or below `at`: only the last one can still be visible, and only
            // when it is a value. A tombstone at exactly `at` stays too, so that a watch
            // starting at the compacted revision still sees every event of that revision.
            let n = h.changes.partition_point(|c| c.rev.main <= at);
            let keep_from = match n.checked_sub(1).and_then(|i| h.changes.get(i)) {
                Some(c) if !c.tombstone || c.rev.main == at => n - 1,
                _ => n,
            };
            dropped.extend(h.changes.drain(..keep_from).map(|c| c.rev));
            let keep = !h.changes.is_empty();
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        for k in gone {
            self.order.remove(&k);
        }
        dropped
    }

    /// Number of keys with any retained history.
    pub fn len(&self) -> usize {
        self.histories.len()
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_history() {
        let mut ix = Index::default();
        ix.put(b"a", Rev::new(2, 0), 0);
        assert_eq!(
            ix.put(b"a", Rev::new(3, 0), 9),
            Put {
                create_revision: 2,
                version: 2,
                old_lease: 0
            }
        );
        ix.tombstone(b"a", Rev::new(5, 0));
        assert_eq!(
            ix.put(b"a", Rev::new(7, 1), 0),
            Put {
                create_revision: 7,
                version: 1,
                old_lease: 0
            },
            "a re-created key starts a new generation; the deleted value's lease is gone"
        );
        assert_eq!(ix.put(b"a", Rev::new(8, 0), 4).old_lease, 0);
        assert_eq!(ix.put(b"a", Rev::new(9, 0), 0).old_lease, 4);
        let h = ix.get(b"a").expect("key a");
        assert_eq!(h.visible_at(1), None);
        assert_eq!(h.visible_at(2), Some(Rev::new(2, 0)));
        assert_eq!(h.visible_at(4), Some(Rev::new(3, 0)));
        assert_eq!(h.visible_at(5), None);
        assert_eq!(h.visible_at(6), None);
        assert_eq!(h.visible_at(7), Some(Rev::new(7, 1)));
    }

    #[test]
    fn compaction_keeps_what_later_reads_see() {
        let mut ix = Index::default();
        ix.put(b"a", Rev::new(2, 0), 0);
        ix.put(b"a", Rev::new(3, 0), 0);
        ix.put(b"b", Rev::new(4, 0), 0);
        ix.tombstone(b"b", Rev::new(5, 0));
        ix.put(b"a", Rev::new(6, 0), 0);
        let mut dropped = ix.compact(5);
        dropped.sort();
        assert_eq!(dropped, vec![Rev::new(2, 0), Rev::new(4, 0)]);
        assert!(
            ix.get(b"b").is_some(),
            "a tombstone at the compaction point stays"
        );
        let a = ix.get(b"a").expect("key a");
        assert_eq!(
            a.visible_at(5),
            Some(Rev::new(3, 0)),
            "reads at the compaction point"
        );
        let mut dropped = ix.compact(6);
        dropped.sort();
        assert_eq!(dropped, vec![Rev::new(3, 0), Rev::new(5, 0)]);
        assert!(
            ix.get(b"b").is_none(),
            "a key deleted before the compaction point is gone"
        );
        let a = ix.get(b"a").expect("key a");
        assert_eq!(a.visible_at(6), Some(Rev::new(6, 0)));
        let left: Vec<&[u8]> = ix
            .range(KeyRange::new(b"\0", b"\0"))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, [b"a"], "a compacted key leaves the ranges too");
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn key_ranges() {
        assert!(KeyRange::new(b"a", b"").contains(b"a"));
        assert!(!KeyRange::new(b"a", b"").contains(b"ab"));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(KeyRange::new(b"a", b"b").contains(b"a\xff"));
        assert!(!KeyRange::new(b"a", b"b").contains(b"b"));
        let mut ix = Index::default();
        ix.put(b"b", Rev::new(2, 0), 0);
        assert_eq!(
            ix.range(KeyRange::new(b"c", b"a")).count(),
            0,
            "inverted range is empty"
        );
        assert_eq!(ix.range(KeyRange::new(b"\0", b"\0")).count(), 1);
        for k in [&b"b\0"[..], b"ab", b"\xff", b"a", b"bb", b"c"] {
            ix.put(k, Rev::new(3, 0), 0);
        }
        let keys =
            |r: KeyRange<'_>| -> Vec<Vec<u8>> { ix.range(r).map(|(k, _)| k.to_vec()).collect() };
        assert_eq!(
            keys(KeyRange::new(b"\0", b"\0")),
            [&b"a"[..], b"ab", b"b", b"b\0", b"bb", b"c", b"\xff"],
            "every key, in byte order"
        );
        assert_eq!(
            keys(KeyRange::new(b"ab", b"bb")),
            [&b"ab"[..], b"b", b"b\0"]
        );
        assert_eq!(keys(KeyRange::new(b"b", b"")), [b"b"], "one key");
        assert!(keys(KeyRange::new(b"ba", b"")).is_empty(), "an absent key");
    }
}
