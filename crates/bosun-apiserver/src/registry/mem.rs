//! An in-memory [`Store`] for the registry's unit tests: revisions, history for reads at a
//! revision, compaction, conditional writes and lease IDs, as the store keeps them, without
//! a store.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::store::{Created, Guard, Kv, Range, RangeError, Store};
use crate::error::Status;

/// One version of a key: its value (`None` once deleted), when it was written, and the lease
/// it is attached to.
#[derive(Debug, Clone)]
struct Version {
    value: Option<Vec<u8>>,
    mod_revision: i64,
    lease: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    revision: i64,
    compacted: i64,
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    next_lease: i64,
    /// Writes the next conditional writes lose to, as a concurrent writer would win them.
    interfere: usize,
    /// Single-key reads served so far.
    gets: usize,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Mutex<State>,
}

impl State {
    fn latest(&self, key: &[u8]) -> Option<&Version> {
        self.keys.get(key).and_then(|v| v.last())
    }

    fn live(&self, key: &[u8]) -> Option<&Version> {
        self.latest(key).filter(|v| v.value.is_some())
    }

    fn write(&mut self, key: &str, value: Option<Vec<u8>>, lease: Option<i64>) -> i64 {
        self.revision += 1;
        let v = Version {
            value,
            mod_revision: self.revision,
            lease,
        };
        self.keys
            .entry(key.as_bytes().to_vec())
            .or_default()
            .push(v);
        self.revision
    }

    /// Whether a conditional write must lose, having been interfered with.
    fn lose(&mut self, key: &str) -> bool {
        if self.interfere == 0 || self.live(key.as_bytes()).is_none() {
            return false;
        }
        self.interfere -= 1;
        let (value, lease) = match self.live(key.as_bytes()) {
            Some(v) => (v.value.clone(), v.lease),
            None => return false,
        };
        self.write(key, value, lease);
        true
    }
}

impl MemStore {
    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.state.lock().revision
    }

    /// Forgets the history before `revision`: reads at an older revision fail.
    pub fn compact(&self, revision: i64) {
        self.state.lock().compacted = revision;
    }

    /// The value of a key, if it exists.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.state
            .lock()
            .live(key.as_bytes())
            .and_then(|v| v.value.clone())
    }

    /// The lease a key is attached to.
    pub fn lease_of(&self, key: &str) -> Option<i64> {
        self.state.lock().live(key.as_bytes()).and_then(|v| v.lease)
    }

    /// Makes the next `n` conditional writes of existing keys lose their race: just before
    /// each, the key is rewritten (same value, new revision), as by another writer.
    pub fn interfere(&self, n: usize) {
        self.state.lock().interfere = n;
    }

    /// How many single-key reads were served.
    pub fn gets(&self) -> usize {
        self.state.lock().gets
    }

    /// Puts a key unconditionally, as another writer (or a broken one) might.
    pub fn put_raw(&self, key: &str, value: &[u8]) -> i64 {
        self.state.lock().write(key, Some(value.to_vec()), None)
    }
}

impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<Kv>, Status> {
        let mut st = self.state.lock();
        st.gets += 1;
        Ok(st.live(key.as_bytes()).map(|v| Kv {
            key: key.as_bytes().to_vec(),
            value: v.value.clone().unwrap_or_default(),
            mod_revision: v.mod_revision,
        }))
    }

    async fn range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
        limit: i64,
    ) -> Result<Range, RangeError> {
        let st = self.state.lock();
        let at = if revision > 0 { revision } else { st.revision };
        if at > st.revision {
            return Err(RangeError::FutureRevision);
        }
        if revision > 0 && revision < st.compacted {
            return Err(RangeError::Compacted);
        }
        let mut all = Vec::new();
        for (key, versions) in st.keys.range(start..end) {
            let Some(v) = versions.iter().rev().find(|v| v.mod_revision <= at) else {
                continue;
            };
            if let Some(value) = &v.value {
                all.push(Kv {
                    key: key.clone(),
                    value: value.clone(),
                    mod_revision: v.mod_revision,
                });
            }
        }
        let count = i64::try_from(all.len()).unwrap_or(i64::MAX);
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = limit > 0 && all.len() > limit;
        if more {
            all.truncate(limit);
        }
        Ok(Range {
            kvs: all,
            revision: st.revision,
            more,
            count,
        })
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
        guard: Option<Guard<'_>>,
    ) -> Result<Created, Status> {
        let mut st = self.state.lock();
        let exists = st.live(key.as_bytes()).is_some();
        if let Some(g) = guard {
            let now = st.live(g.key.as_bytes()).map(|v| v.mod_revision);
            if now != Some(g.revision) {
                return Ok(Created::GuardChanged);
            }
        }
        if exists {
            return Ok(Created::Exists);
        }
        Ok(Created::At(st.write(key, Some(value), lease)))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: i64,
    ) -> Result<Option<i64>, Status> {
        let mut st = self.state.lock();
        if st.lose(key) {
            return Ok(None);
        }
        match st.live(key.as_bytes()) {
            Some(v) if v.mod_revision == revision => {
                let lease = v.lease;
                Ok(Some(st.write(key, Some(value), lease)))
            }
            _ => Ok(None),
        }
    }

    async fn delete(&self, key: &str, revision: i64) -> Result<Option<i64>, Status> {
        let mut st = self.state.lock();
        if st.lose(key) {
            return Ok(None);
        }
        match st.live(key.as_bytes()) {
            Some(v) if v.mod_revision == revision => Ok(Some(st.write(key, None, None))),
            _ => Ok(None),
        }
    }

    async fn grant_lease(&self, _ttl: i64) -> Result<i64, Status> {
        let mut st = self.state.lock();
        st.next_lease += 1;
        Ok(st.next_lease)
    }
}
