//! Reads: etcd's Range semantics over the index and the revision-keyed values.

use std::cmp::Ordering;

use bosun_proto::etcdserverpb::{RangeRequest, RangeResponse, range_request};
use bosun_proto::mvccpb::{Event, KeyValue, event::EventType};
use rocksdb::{Direction, IteratorMode};

use super::{CF_KV, KeyRange, Mvcc, Rev, State, cf, decode_change};
use crate::error::{EtcdError, EtcdResult};

/// The MVCC-level options of a range (what etcd's `mvcc.RangeOptions` holds).
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOpts {
    /// Maximum number of keys to return; 0 = all.
    pub limit: usize,
    /// Revision to read at; <= 0 = the current one.
    pub rev: i64,
    /// Count only, return no values.
    pub count_only: bool,
}

/// The result of an MVCC range: values at the read revision, the total number of keys in the
/// range, and the store's current revision.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub count: usize,
    pub rev: i64,
}

/// Resolves the revision a read sees and checks it against history bounds.
pub(crate) fn read_rev(state: &State, cur: i64, rev: i64) -> EtcdResult<i64> {
    if rev > cur {
        return Err(EtcdError::FutureRev);
    }
    let at = if rev <= 0 { cur } else { rev };
    if at < state.compact_rev {
        return Err(EtcdError::Compacted);
    }
    Ok(at)
}

/// The MVCC range: which keys are visible at the read revision, fetched through `fetch`.
pub(crate) fn mvcc_range(
    state: &State,
    cur: i64,
    range: KeyRange<'_>,
    opts: RangeOpts,
    fetch: &mut dyn FnMut(&[Rev]) -> EtcdResult<Vec<KeyValue>>,
) -> EtcdResult<RangeResult> {
    let at = read_rev(state, cur, opts.rev)?;
    let mut revs = Vec::new();
    let mut count = 0usize;
    for (_, h) in state.index.range(range) {
        if let Some(r) = h.visible_at(at) {
            count += 1;
            if !opts.count_only && (opts.limit == 0 || revs.len() < opts.limit) {
                revs.push(r);
            }
        }
    }
    let kvs = if opts.count_only {
        Vec::new()
    } else {
        fetch(&revs)?
    };
    Ok(RangeResult {
        kvs,
        count,
        rev: cur,
    })
}

/// etcd's Range request on top of [`mvcc_range`]: filters, sorting, limit, `more`, `count`.
pub(crate) fn range_request(
    state: &State,
    cur: i64,
    r: &RangeRequest,
    fetch: &mut dyn FnMut(&[Rev]) -> EtcdResult<Vec<KeyValue>>,
) -> EtcdResult<RangeResponse> {
    use range_request::{SortOrder, SortTarget};
    let sort_order = SortOrder::try_from(r.sort_order).map_err(|_| EtcdError::InvalidSortOption)?;
    let sort_target =
        SortTarget::try_from(r.sort_target).map_err(|_| EtcdError::InvalidSortOption)?;
    let limit = usize::try_from(r.limit.max(0)).unwrap_or(usize::MAX);
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // Fetch everything when sorting or filtering; otherwise one extra to know about `more`.
    let fetch_limit = if sort_order != SortOrder::None || filtered {
        0
    } else if limit > 0 {
        limit.saturating_add(1)
    } else {
        0
    };
    let opts = RangeOpts {
        limit: fetch_limit,
        rev: r.revision,
        count_only: r.count_only,
    };
    let mut rr = mvcc_range(state, cur, KeyRange::new(&r.key, &r.range_end), opts, fetch)?;
    if filtered {
        rr.kvs.retain(|kv| {
            !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
                || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
                || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
                || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
        });
    }
    // Values come in ascending key order; sort only when that is not what was asked.
    let order = match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (t, SortOrder::None) if t != SortTarget::Key => SortOrder::Ascend,
        (_, o) => o,
    };
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Descend {
            rr.kvs.sort_by(|a, b| cmp(b, a));
        } else {
            rr.kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if limit > 0 && rr.kvs.len() > limit {
        rr.kvs.truncate(limit);
        more = true;
    }
    if r.keys_only {
        for kv in &mut rr.kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(crate::header_at(rr.rev)),
        kvs: rr.kvs,
        more,
        count: i64::try_from(rr.count).unwrap_or(i64::MAX),
    })
}

/// Events of one revision, in the order they were made.
#[derive(Debug, Clone)]
pub struct RevEvents {
    pub rev: i64,
    pub events: Vec<Event>,
}

impl Mvcc {
    /// Fetches stored values by revision from RocksDB.
    pub(crate) fn fetch(&self, revs: &[Rev]) -> EtcdResult<Vec<KeyValue>> {
        let cf = cf(&self.db, CF_KV)?;
        let missing =
            |rev: &Rev| EtcdError::internal(format!("corrupt store: no value at revision {rev:?}"));
        if let [rev] = revs {
            // One key (the common get): a plain lookup costs less than a batched one.
            let v = self
                .db
                .get_pinned_cf(cf, rev.to_key())
                .map_err(EtcdError::internal)?
                .ok_or_else(|| missing(rev))?;
            return Ok(vec![decode_change(&v)?.0]);
        }
        let keys: Vec<[u8; 16]> = revs.iter().map(|r| r.to_key()).collect();
        let mut out = Vec::with_capacity(revs.len());
        for (i, v) in self
            .db
            .batched_multi_get_cf(cf, keys.iter(), true)
            .into_iter()
            .enumerate()
        {
            let v = v
                .map_err(EtcdError::internal)?
                .ok_or_else(|| missing(&revs[i]))?;
            out.push(decode_change(&v)?.0);
        }
        Ok(out)
    }

    /// etcd's Range.
    pub fn range(&self, r: &RangeRequest) -> EtcdResult<RangeResponse> {
        let st = self.state.read();
        range_request(&st, st.rev, r, &mut |revs| self.fetch(revs))
    }

    /// The events of revisions `from..=to` (at most up to the current revision) touching
    /// `range`, with each event's previous value when `prev_kv`. Stops after the revision in
    /// which `max_events` is reached, so a call reads a bounded amount; returns the events and
    /// the last revision covered. Fails with `Compacted` when `from` is compacted away.
    pub fn history(
        &self,
        range: KeyRange<'_>,
        from: i64,
        prev_kv: bool,
        max_events: usize,
    ) -> EtcdResult<(Vec<RevEvents>, i64)> {
        // Pin a consistent view, then scan it without holding the store lock, so a long
        // replay never stalls the writer.
        let (cur, snap) = {
            let st = self.state.read();
            if from < st.compact_rev {
                return Err(EtcdError::Compacted);
            }
            (st.rev, self.db.snapshot())
        };
        let cf = cf(&self.db, CF_KV)?;
        let start = Rev::new(from, 0).to_key();
        // Changes looked at per call, matching or not: bounds the work of one step.
        let max_scanned = max_events.saturating_mul(16);
        let mut out: Vec<RevEvents> = Vec::new();
        let mut seen = 0usize;
        let mut scanned = 0usize;
        let mut last_main = from - 1;
        let mut covered = cur;
        for item in snap.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(EtcdError::internal)?;
            let rev = Rev::from_key(&k).ok_or_else(|| EtcdError::internal("corrupt kv key"))?;
            if rev.main > cur {
                break;
            }
            if rev.main != last_main && (seen >= max_events || scanned >= max_scanned) {
                covered = last_main;
                break;
            }
            last_main = rev.main;
            scanned = scanned.saturating_add(1);
            let (kv, tombstone) = decode_change(&v)?;
            if !range.contains(&kv.key) {
                continue;
            }
            let prev = if prev_kv {
                self.value_before(&kv.key, rev.main)?
            } else {
                None
            };
            let ev = Event {
                r#type: if tombstone {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv: prev,
            };
            seen += 1;
            match out.last_mut() {
                Some(b) if b.rev == rev.main => b.events.push(ev),
                _ => out.push(RevEvents {
                    rev: rev.main,
                    events: vec![ev],
                }),
            }
        }
        Ok((out, covered))
    }
}
