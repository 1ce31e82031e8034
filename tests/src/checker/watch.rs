//! The watch-stream checker: the guarantees etcd's robustness suite checks of watches
//! (ordered, unique, atomic, reliable, resumable), checked for every watcher and across
//! watchers and members against the store's own history.
//!
//! The store's history is itself a watch stream: one read from revision 1 on a healthy member
//! at the end of a run, which the store serves from what it keeps (its replay path), not from
//! the events it published while applying (its live path). A watcher that saw something else
//! for a revision, missed one, or saw one the store does not have, diverged.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One event delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The revision of the write (mod revision).
    pub revision: i64,
    /// The key written or deleted.
    pub key: String,
    /// The value written, `None` for a delete.
    pub value: Option<u64>,
    /// The key's create revision and version after the write (0 for a delete).
    pub create_revision: i64,
    pub version: i64,
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(
                f,
                "revision {} put {:?} = {v} (created {}, version {})",
                self.revision, self.key, self.create_revision, self.version
            ),
            None => write!(f, "revision {} delete {:?}", self.revision, self.key),
        }
    }
}

/// The events of one watch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchBatch {
    /// The events, in the order the response listed them.
    pub events: Vec<WatchEvent>,
    /// The member that sent the response (the member ID in its header).
    pub member: u64,
}

/// A point where a watcher re-created its watch (after a broken stream), possibly on another
/// member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Index of the first batch received after the resume.
    pub batch: usize,
    /// The start revision the re-created watch asked for, when the watcher knows it (one that
    /// uses the SDK does not: the SDK resumes by itself, from its last revision + 1).
    pub start_revision: Option<i64>,
}

/// Everything one watcher received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchHistory {
    /// Which watcher, for messages (e.g. "w2 (pinned to m3)").
    pub name: String,
    /// The revision the watch started from.
    pub start_revision: i64,
    /// The responses received, in order, across resumes.
    pub batches: Vec<WatchBatch>,
    /// Where the watcher resumed, in order.
    pub resumes: Vec<Resume>,
    /// Why the watcher stopped before it was done, if it did (a canceled watch, an error).
    pub ended: Option<String>,
}

impl WatchHistory {
    /// An empty history of watcher `name` starting at `start_revision`.
    pub fn new(name: impl Into<String>, start_revision: i64) -> Self {
        WatchHistory {
            name: name.into(),
            start_revision,
            batches: Vec::new(),
            resumes: Vec::new(),
            ended: None,
        }
    }

    /// Number of events received.
    pub fn events(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }

    /// The highest revision received.
    pub fn last_revision(&self) -> Option<i64> {
        self.batches
            .iter()
            .flat_map(|b| &b.events)
            .map(|e| e.revision)
            .max()
    }

    /// The revision no event of batch `b` may be below: the start revision of the last
    /// resume at or before it whose start is known, else the watch's start revision; with the
    /// resume it comes from.
    fn floor_at(&self, b: usize) -> (i64, Option<&Resume>) {
        self.resumes
            .iter()
            .rev()
            .filter(|r| r.batch <= b)
            .find_map(|r| r.start_revision.map(|s| (s, Some(r))))
            .unwrap_or((self.start_revision, None))
    }

    /// " (right after ...)" when batch `b` is the first one after a resume.
    fn resume_note(&self, b: usize) -> String {
        match self.resumes.iter().rev().find(|r| r.batch == b) {
            Some(r) => format!(" (right after the watcher resumed at batch {b}{})", from(r)),
            None => String::new(),
        }
    }

    /// " (around ...)" when the watcher resumed between batches `after` and `before`.
    fn resume_between(&self, after: Option<usize>, before: Option<usize>) -> String {
        let hit = self
            .resumes
            .iter()
            .find(|r| after.is_none_or(|a| r.batch > a) && before.is_none_or(|b| r.batch <= b));
        hit.map(|r| format!(" (around the resume at batch {}{})", r.batch, from(r)))
            .unwrap_or_default()
    }
}

/// " from revision N" for a resume whose start is known.
fn from(r: &Resume) -> String {
    r.start_revision
        .map(|s| format!(" from revision {s}"))
        .unwrap_or_default()
}

/// What one stream delivered per revision: the events (in delivery order, without
/// duplicates) and the batch the revision started in.
type Revisions<'a> = BTreeMap<i64, (Vec<&'a WatchEvent>, usize)>;

/// Checks one stream on its own: every event at or above the start revision in force (the
/// watch's, or the last resume's), no (revision, key) twice, revisions in order, and each
/// revision's events in one batch. Returns what it delivered per revision.
fn scan<'a>(h: &'a WatchHistory, errors: &mut Vec<String>) -> Revisions<'a> {
    let name = &h.name;
    let mut revisions: Revisions<'a> = BTreeMap::new();
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    // The revision of the previous event and the batch it started in.
    let mut current: Option<(i64, usize)> = None;
    for (b, batch) in h.batches.iter().enumerate() {
        let (floor, resume) = h.floor_at(b);
        for ev in &batch.events {
            let (rev, key) = (ev.revision, ev.key.as_str());
            if rev < floor {
                let asked = match resume {
                    Some(r) => format!("the resume at batch {} asked for", r.batch),
                    None => "the watch asked for".to_string(),
                };
                errors.push(format!(
                    "{name}: event ({ev}) in batch {b} from member {:x} is below the start \
                     revision {floor} {asked}",
                    batch.member
                ));
                continue;
            }
            if !seen.insert((rev, key)) {
                let first = revisions.get(&rev).map_or(b, |(_, first)| *first);
                errors.push(format!(
                    "{name}: event (revision {rev}, key {key:?}) delivered twice, in batch \
                     {first} and again in batch {b}{}",
                    h.resume_note(b)
                ));
                continue;
            }
            match current {
                Some((prev, _)) if rev < prev => errors.push(format!(
                    "{name}: event (revision {rev}, key {key:?}) in batch {b} arrives after \
                     revision {prev}: out of order{}",
                    h.resume_note(b)
                )),
                Some((prev, started)) if rev == prev && started != b => errors.push(format!(
                    "{name}: revision {rev} is split across batches {started} and {b} (key \
                     {key:?} arrives in the later one): not atomic{}",
                    h.resume_note(b)
                )),
                Some((prev, _)) if rev == prev => {}
                _ => current = Some((rev, b)),
            }
            revisions
                .entry(rev)
                .or_insert_with(|| (Vec::new(), b))
                .0
                .push(ev);
        }
    }
    revisions
}

/// Events for messages: "[revision 7 put ..., ...]".
fn show(events: &[&WatchEvent]) -> String {
    let list: Vec<String> = events.iter().map(ToString::to_string).collect();
    format!("[{}]", list.join(", "))
}

/// Most problems reported per stream, and in all.
const MAX_PER_STREAM: usize = 12;
const MAX_ERRORS: usize = 60;

/// Checks watch streams against the store's history (`store`: a watch of the same keys from
/// revision 1 on a healthy member, read after the run) and the acknowledged puts
/// (`(revision, key, value)`), up to `final_revision`, the revision of the last write.
///
/// Each stream, the store's included, must be ordered, unique (no (revision, key) twice,
/// also across resumes), atomic (a revision's events in one batch) and never below the start
/// revision it asked for (the watch's, or the resume's). Each watcher must reach
/// `final_revision` and, over every revision from its start to there, deliver exactly the
/// store's events: the same keys, values, create revisions and versions, in the same order.
/// A revision it missed, one that differs, or one the store does not have is reported, with
/// the first event where the stream parts from the store's. The store's history must hold
/// every acknowledged put with its value.
///
/// Returns all problems found (up to a limit), one per line.
pub fn check_watches(
    histories: &[WatchHistory],
    store: &WatchHistory,
    acknowledged: &[(i64, String, u64)],
    final_revision: i64,
) -> Result<(), String> {
    let mut errors: Vec<String> = Vec::new();
    let mut own = Vec::new();
    let store_revs = scan(store, &mut own);
    if let Some(reason) = &store.ended {
        own.push(format!("{}: ended early: {reason}", store.name));
    }
    if store.last_revision().unwrap_or(0) < final_revision {
        own.push(format!(
            "{}: ends at revision {}, before the final revision {final_revision}",
            store.name,
            store.last_revision().unwrap_or(0)
        ));
    }
    for (rev, key, value) in acknowledged {
        let found = store_revs
            .get(rev)
            .and_then(|(evs, _)| evs.iter().find(|e| e.key == *key));
        match found {
            None => own.push(format!(
                "{}: lacks the acknowledged put (revision {rev}, key {key:?}, value {value})",
                store.name
            )),
            Some(e) if e.value != Some(*value) => own.push(format!(
                "{}: the acknowledged put (revision {rev}, key {key:?}) wrote {value} but the \
                 store has {e}",
                store.name
            )),
            Some(_) => {}
        }
    }
    push_limited(&mut errors, own);

    for h in histories {
        let mut own = Vec::new();
        let revs = scan(h, &mut own);
        let name = &h.name;
        if let Some(reason) = &h.ended {
            own.push(format!("{name}: ended early: {reason}"));
        }
        let last = h.last_revision().unwrap_or(h.start_revision - 1);
        if last < final_revision {
            own.push(format!(
                "{name}: stopped at revision {last}, before the final revision {final_revision}"
            ));
        }
        // Where, relative to this watcher's batches, a missing revision falls.
        let gap_note = |rev: i64| {
            let after = revs.range(..rev).next_back().map(|(_, &(_, b))| b);
            let before = revs.range(rev..).next().map(|(_, &(_, b))| b);
            h.resume_between(after, before)
        };
        for (&rev, (want, _)) in store_revs.range(h.start_revision..=last) {
            match revs.get(&rev) {
                None => own.push(format!(
                    "{name}: missed revision {rev} {}, although it covered revisions {}..={last}{}",
                    show(want),
                    h.start_revision,
                    gap_note(rev)
                )),
                Some((got, b)) if got != want => own.push(format!(
                    "{name}: revision {rev} in batch {b} from member {:x} differs from the \
                     store's history: got {}, the store has {}",
                    h.batches[*b].member,
                    show(got),
                    show(want)
                )),
                Some(_) => {}
            }
        }
        for (&rev, (got, b)) in &revs {
            if !store_revs.contains_key(&rev) {
                own.push(format!(
                    "{name}: revision {rev} in batch {b} from member {:x} is not in the store's \
                     history: {}",
                    h.batches[*b].member,
                    show(got)
                ));
            }
        }
        if !own.is_empty()
            && let Some(line) = first_divergence(h, &store_revs, last)
        {
            own.insert(0, line);
        }
        push_limited(&mut errors, own);
    }

    if errors.is_empty() {
        return Ok(());
    }
    let total = errors.len();
    errors.truncate(MAX_ERRORS);
    if total > MAX_ERRORS {
        errors.push(format!("... and {} more problems", total - MAX_ERRORS));
    }
    Err(errors.join("\n"))
}

/// Appends one stream's problems, at most [`MAX_PER_STREAM`] of them.
fn push_limited(errors: &mut Vec<String>, mut own: Vec<String>) {
    let n = own.len();
    if n > MAX_PER_STREAM {
        own.truncate(MAX_PER_STREAM);
        own.push(format!(
            "... and {} more problems of this stream",
            n - MAX_PER_STREAM
        ));
    }
    errors.extend(own);
}

/// Where `h`'s events, in the order delivered, first part from the store's events over the
/// revisions from its start to `last`: "w1: event #700 (...) differs from the store's
/// event #700 (...)".
fn first_divergence(h: &WatchHistory, store: &Revisions<'_>, last: i64) -> Option<String> {
    let got = h.batches.iter().flat_map(|b| &b.events);
    let want = store
        .range(h.start_revision..=last)
        .flat_map(|(_, (evs, _))| evs.iter().copied());
    let mut got = got.fuse();
    let mut want = want.fuse();
    for i in 0.. {
        match (got.next(), want.next()) {
            (None, None) => return None,
            (Some(g), Some(w)) if g == w => {}
            (g, w) => {
                let show =
                    |e: Option<&WatchEvent>| e.map_or("nothing".to_string(), |e| format!("({e})"));
                return Some(format!(
                    "{}: its event #{i} {} first differs from the store's history, which has {} \
                     there",
                    h.name,
                    show(g),
                    show(w)
                ));
            }
        }
    }
    None
}

/// Revisions in `from..=to` with no event in `h`: for a workload that writes only under the
/// watched keys, every revision has one.
pub fn revisions_without_events(h: &WatchHistory, from: i64, to: i64) -> Vec<i64> {
    let have: HashSet<i64> = h
        .batches
        .iter()
        .flat_map(|b| &b.events)
        .map(|e| e.revision)
        .collect();
    (from..=to).filter(|r| !have.contains(r)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(revision: i64, key: &str, value: Option<u64>) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.into(),
            value,
            create_revision: if value.is_some() { 2 } else { 0 },
            version: i64::from(value.is_some()),
        }
    }

    fn batch(events: Vec<WatchEvent>) -> WatchBatch {
        WatchBatch { events, member: 1 }
    }

    /// The store's history: revisions 2..=9.
    fn store() -> WatchHistory {
        let mut h = WatchHistory::new("store history of m1", 1);
        h.batches = vec![batch(vec![
            ev(2, "a", Some(1)),
            ev(3, "c", Some(9)),
            ev(4, "b", Some(2)),
            ev(4, "a", Some(3)),
            ev(5, "a", None),
            ev(6, "c", Some(8)),
            ev(7, "c", Some(4)),
            ev(8, "d", Some(6)),
            ev(9, "a", Some(5)),
        ])];
        h
    }

    /// Two watchers: w0 from revision 2 without interruption, w1 from revision 4 with a
    /// resume on another member from revision 6.
    fn good_watches() -> Vec<WatchHistory> {
        let mut w0 = WatchHistory::new("w0", 2);
        w0.batches = vec![
            batch(vec![ev(2, "a", Some(1)), ev(3, "c", Some(9))]),
            batch(vec![ev(4, "b", Some(2)), ev(4, "a", Some(3))]),
            batch(vec![]),
            batch(vec![
                ev(5, "a", None),
                ev(6, "c", Some(8)),
                ev(7, "c", Some(4)),
            ]),
            batch(vec![ev(8, "d", Some(6)), ev(9, "a", Some(5))]),
        ];
        let mut w1 = WatchHistory::new("w1", 4);
        w1.batches = vec![
            batch(vec![ev(4, "b", Some(2)), ev(4, "a", Some(3))]),
            batch(vec![ev(5, "a", None)]),
            WatchBatch {
                events: vec![ev(6, "c", Some(8)), ev(7, "c", Some(4))],
                member: 2,
            },
            batch(vec![ev(8, "d", Some(6)), ev(9, "a", Some(5))]),
        ];
        w1.resumes = vec![Resume {
            batch: 2,
            start_revision: Some(6),
        }];
        vec![w0, w1]
    }

    fn acked() -> Vec<(i64, String, u64)> {
        vec![
            (2, "a".into(), 1),
            (4, "a".into(), 3),
            (7, "c".into(), 4),
            (9, "a".into(), 5),
        ]
    }

    /// Asserts that the checker's report `err` says `what`.
    #[track_caller]
    fn says(err: &str, what: &str) {
        assert!(err.contains(what), "expected {what:?} in:\n{err}");
    }

    fn watch_error(histories: &[WatchHistory], store: &WatchHistory) -> String {
        let err = check_watches(histories, store, &acked(), 9).unwrap_err();
        eprintln!("{err}");
        err
    }

    #[test]
    fn good_watch_streams_pass() {
        check_watches(&good_watches(), &store(), &acked(), 9).unwrap();
        check_watches(&[], &store(), &acked(), 9).unwrap();
        assert!(revisions_without_events(&store(), 2, 9).is_empty());
        assert_eq!(revisions_without_events(&good_watches()[1], 2, 9), [2, 3]);
    }

    #[test]
    fn watch_gap_at_resume_is_reported() {
        let mut h = good_watches();
        // w1 resumes at batch 2 and skips revision 6.
        h[1].batches[2].events.remove(0);
        let err = watch_error(&h, &store());
        says(&err, "w1: missed revision 6 [revision 6 put \"c\" = 8");
        says(&err, "around the resume at batch 2 from revision 6");
        says(&err, "w1: its event #3 (revision 7 put \"c\" = 4");
    }

    #[test]
    fn watch_duplicate_after_resume_is_reported() {
        let mut h = good_watches();
        // The resume asked for revision 5: the member sends revision 5 again.
        h[1].resumes[0].start_revision = Some(5);
        h[1].batches[2].events.insert(0, ev(5, "a", None));
        let err = watch_error(&h, &store());
        says(
            &err,
            "w1: event (revision 5, key \"a\") delivered twice, in batch 1 and again in batch 2",
        );
        says(&err, "resumed at batch 2 from revision 5");
    }

    #[test]
    fn watch_event_below_the_resume_start_is_reported() {
        let mut h = good_watches();
        // Resumed from 6 on a member that was behind: it sends revision 5 as well.
        h[1].batches[2].events.insert(0, ev(5, "a", None));
        let err = watch_error(&h, &store());
        says(
            &err,
            "w1: event (revision 5 delete \"a\") in batch 2 from member 2 is below the start \
                 revision 6 the resume at batch 2 asked for",
        );
        // Below the watch's own start revision.
        let mut h = good_watches();
        h[1].batches[0].events.insert(0, ev(3, "c", Some(9)));
        let err = watch_error(&h, &store());
        says(&err, "is below the start revision 4 the watch asked for");
    }

    #[test]
    fn watch_split_revision_is_reported() {
        let mut h = good_watches();
        h[0].batches[1] = batch(vec![ev(4, "b", Some(2))]);
        h[0].batches[2] = batch(vec![ev(4, "a", Some(3))]);
        let err = watch_error(&h, &store());
        says(&err, "w0: revision 4 is split across batches 1 and 2");
    }

    #[test]
    fn watch_reordering_is_reported() {
        let mut h = good_watches();
        h[0].batches[3] = batch(vec![
            ev(5, "a", None),
            ev(7, "c", Some(4)),
            ev(6, "c", Some(8)),
        ]);
        let err = watch_error(&h, &store());
        says(
            &err,
            "w0: event (revision 6, key \"c\") in batch 3 arrives after revision 7: out of order",
        );
        says(&err, "w0: its event #5 (revision 7");
    }

    #[test]
    fn watch_that_stops_early_is_reported() {
        let mut h = good_watches();
        h[0].batches.pop();
        h[0].ended = Some("canceled: compacted".into());
        let err = watch_error(&h, &store());
        says(&err, "w0: ended early: canceled: compacted");
        says(
            &err,
            "w0: stopped at revision 7, before the final revision 9",
        );
    }

    #[test]
    fn watch_differing_from_the_store_is_reported() {
        // Another value, another version, an extra key, a revision the store lacks.
        let mut h = good_watches();
        h[1].batches[2].events[1].value = Some(40);
        let err = watch_error(&h, &store());
        says(
            &err,
            "w1: revision 7 in batch 2 from member 2 differs from the store's history: got [revision 7 put \"c\" = 40",
        );
        let mut h = good_watches();
        h[0].batches[4].events[1].version = 3;
        let err = watch_error(&h, &store());
        says(&err, "w0: revision 9 in batch 4");
        let mut h = good_watches();
        h[0].batches[4].events.push(ev(9, "e", Some(7)));
        let err = watch_error(&h, &store());
        says(&err, "w0: revision 9 in batch 4");
        let mut h = good_watches();
        h[0].batches.push(batch(vec![ev(10, "e", Some(7))]));
        let err = watch_error(&h, &store());
        says(
            &err,
            "w0: revision 10 in batch 5 from member 1 is not in the store's history",
        );
    }

    #[test]
    fn store_history_missing_an_acknowledged_put_is_reported() {
        let mut acknowledged = acked();
        acknowledged.push((8, "e".into(), 6));
        acknowledged[1].2 = 33;
        let err = check_watches(&good_watches(), &store(), &acknowledged, 9).unwrap_err();
        says(
            &err,
            "store history of m1: lacks the acknowledged put (revision 8, key \"e\", value 6)",
        );
        says(
            &err,
            "the acknowledged put (revision 4, key \"a\") wrote 33 but the store has revision 4 put \"a\" = 3",
        );
        let mut short = store();
        short.batches[0].events.pop();
        let err = check_watches(&[], &short, &acked(), 9).unwrap_err();
        says(&err, "ends at revision 8, before the final revision 9");
    }
}
