//! History checkers for the chaos test.
//!
//! * [`check`] decides whether a recorded history of register operations (put, get,
//!   compare-and-set on independent keys) is linearizable. It is a Wing & Gong search over the
//!   call/return events of each key, with memoization of visited configurations (the set of
//!   operations already linearized plus the register value). Operations whose outcome is
//!   unknown are handled porcupine-style: they get a return time of +infinity and need not be
//!   linearized at all.
//! * [`check_watches`] (in [`watch`]) checks recorded watch streams against the store's own
//!   history: ordered, unique, atomic per revision, never below the revision asked for,
//!   reliable up to the final revision, identical across watchers and members, and holding
//!   every acknowledged write.
//!
//! # How operations with an unknown outcome are handled
//!
//! A write whose client never learned the outcome (`complete: None`) may have taken effect at
//! any point after its invocation, or never. Its return event is placed at +infinity, so it is
//! concurrent with everything that follows its invocation, and the search succeeds as soon as
//! every operation with a known completion is linearized: the unknown ones still pending are
//! taken to have never happened (equivalently, to happen after everything, where nobody sees
//! them). Unknown operations widen the search enormously if handled naively (each one is a
//! candidate at every later point), so these rules keep them in check:
//!
//! 1. An unknown write whose value nobody could have observed is set aside before the search
//!    (see `set_aside_unobserved` for the exact condition and why it is sound).
//! 2. Candidates with a known completion are tried before unknown ones, and the memo table is a
//!    dominance check rather than an equality check: a configuration is skipped when one with the
//!    same known operations, the same value and a *subset* of the unknown operations was already
//!    visited, because leaving an unknown operation pending only keeps more options open. An
//!    unknown put that is placed and then overwritten therefore lands on a configuration that
//!    was already explored without it and is cut off at once.
//! 3. An unknown operation is placed only when it changes the value and something pending can
//!    use the new value next: a read returning it, a compare-and-set expecting it, or a
//!    compare-and-set that needs the value to differ from the current one (see `Scan`). An
//!    operation placed right after an unknown one must also depend on it (see `redundant`).
//!    Any linearization can be rearranged to follow these rules (an unknown write not
//!    used by the next operation can be moved later past it, or dropped), so no verdict changes.
//!
//! A further reduction applies to all operations: when a read-only operation (a read, or a
//! compare-and-set known to have failed) can be linearized next, the search commits to it
//! without trying alternatives, because any linearization can be rearranged to place it first:
//! it is pending, so no pending operation finished before it started, and moving an operation
//! that never changes the value to an earlier point where it fits changes nothing else.
//!
//! # Cost
//!
//! The search is iterative (an explicit stack, so long histories cannot overflow the call
//! stack), the memo key compresses the set of linearized operations to the words around the
//! frontier, values that no operation reads share one memo key (they behave identically), and
//! the memo lives in flat vectors. A linearizable history of 10,000 operations on one key with
//! 16 concurrent clients takes well under a second in an optimized build; refuting a bad one
//! means exhausting every configuration before the bad operation, which takes longer (a few
//! seconds at that size and concurrency), hence the time budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

pub mod watch;

pub use watch::{Resume, WatchBatch, WatchEvent, WatchHistory, check_watches};

/// What a recorded operation did, on which key, and what the client observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Set `key` to `value`.
    Put { key: String, value: u64 },
    /// Read `key`; `result` is `None` when the key was absent.
    Get { key: String, result: Option<u64> },
    /// Set `key` to `new` if it currently holds `expected` (`None` = absent).
    /// `succeeded: None` means the client does not know whether the swap happened.
    Cas {
        key: String,
        expected: Option<u64>,
        new: u64,
        succeeded: Option<bool>,
    },
}

impl OpKind {
    /// The key (register) the operation touches.
    pub fn key(&self) -> &str {
        match self {
            OpKind::Put { key, .. } | OpKind::Get { key, .. } | OpKind::Cas { key, .. } => key,
        }
    }
}

/// One recorded client operation. Times are nanoseconds from an origin shared by all clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which client issued it (only used in explanations).
    pub client: usize,
    /// When the request was sent.
    pub invoke: u64,
    /// When the response arrived; `None` when the outcome is unknown (timeout, connection
    /// lost), in which case the operation may have taken effect at any time after `invoke`, or
    /// never.
    pub complete: Option<u64>,
    /// The operation and its observed result.
    pub kind: OpKind,
}

/// The verdict of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Some order of the operations respects real time and the register semantics.
    Linearizable,
    /// No such order exists; the text names the key and the operations where the search got
    /// stuck.
    Violation(String),
    /// The time budget ran out before the search finished; the text says where.
    Inconclusive(String),
}

impl Outcome {
    /// Whether this is [`Outcome::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Outcome::Linearizable)
    }
}

/// Checks whether `history` is linearizable with respect to a map of independent registers
/// that all start absent, spending at most about `budget` on it.
///
/// Registers are independent, so each key is checked on its own (a history is linearizable if
/// and only if every per-key sub-history is), in key order. The first key found to violate
/// linearizability decides the result; running out of budget stops the check with an
/// inconclusive result.
pub fn check(history: &[Op], budget: Duration) -> Outcome {
    let deadline = Instant::now().checked_add(budget);
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.kind.key()).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_key(key, &ops, deadline) {
            Outcome::Linearizable => {}
            other => return other,
        }
    }
    Outcome::Linearizable
}

/// The register semantics of one operation, detached from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Put(u64),
    Get(Option<u64>),
    Cas {
        expected: Option<u64>,
        new: u64,
        succeeded: Option<bool>,
    },
}

impl Step {
    /// The register value after applying the operation to `state`, or `None` if the observed
    /// result is impossible from `state`.
    fn apply(self, state: Option<u64>) -> Option<Option<u64>> {
        match self {
            Step::Put(v) => Some(Some(v)),
            Step::Get(result) => (result == state).then_some(state),
            Step::Cas {
                expected,
                new,
                succeeded,
            } => {
                let swaps = state == expected;
                match succeeded {
                    Some(observed) if observed != swaps => None,
                    _ => Some(if swaps { Some(new) } else { state }),
                }
            }
        }
    }

    /// Whether the operation never changes the value, wherever it is placed: a read or a
    /// compare-and-set known to have failed. (A put of the current value or a failing
    /// compare-and-set with unknown outcome preserve the value here, but would change it if
    /// placed elsewhere, so they are not.)
    fn read_only(self) -> bool {
        matches!(
            self,
            Step::Get(_)
                | Step::Cas {
                    succeeded: Some(false),
                    ..
                }
        )
    }

    /// The value this operation may write, if any.
    fn written(self) -> Option<u64> {
        match self {
            Step::Put(v) | Step::Cas { new: v, .. } => Some(v),
            Step::Get(_) => None,
        }
    }
}

/// An operation prepared for the search.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    op: &'a Op,
    step: Step,
    invoke: u64,
    /// Completion time; for unknown-outcome operations this is `u64::MAX` and unused.
    complete: u64,
    /// Whether some operation reads the value this one writes (a read returning it, a
    /// compare-and-set expecting it).
    read_by_someone: bool,
}

/// Turns a recorded operation into a search item, or drops it when it cannot matter:
/// a read with unknown outcome tells nothing, and a compare-and-set that is known to have
/// failed but whose response never arrived is a no-op. A compare-and-set without response but
/// marked as succeeded is contradictory; it is treated as unknown (it may or may not have
/// happened), which is the weaker claim.
fn prepare(op: &Op) -> Option<Item<'_>> {
    let step = match &op.kind {
        OpKind::Put { value, .. } => Step::Put(*value),
        OpKind::Get { result, .. } if op.complete.is_some() => Step::Get(*result),
        OpKind::Get { .. } => return None,
        OpKind::Cas {
            expected,
            new,
            succeeded,
            ..
        } => {
            let succeeded = match (op.complete, *succeeded) {
                (None, Some(false)) => return None,
                (None, _) => None,
                (Some(_), s) => s,
            };
            Step::Cas {
                expected: *expected,
                new: *new,
                succeeded,
            }
        }
    };
    // A response cannot arrive before its request; clamp bad clocks instead of confusing the
    // event order (a return must follow its call).
    let complete = op.complete.map_or(u64::MAX, |c| c.max(op.invoke));
    Some(Item {
        op,
        step,
        invoke: op.invoke,
        complete,
        read_by_someone: false,
    })
}

/// Removes unknown-outcome writes that no operation could have observed, returning how many.
///
/// An unknown write `W` of value `v` invoked at `t` is removed when
/// * no read returned `v`,
/// * no compare-and-set expected `v`, and
/// * no compare-and-set that completed at or after `t` failed or has an unknown success flag
///   (such an operation observes "the value differs from what I expected", which `W` could
///   explain).
///
/// Soundness: `W` may always be left out, so a linearization without it is one with it.
/// Conversely take a linearization that contains `W` and delete `W`. Only the operations
/// between `W` and the next write that changes the value are affected: they saw `v`. A read
/// among them returned `v` and a successful compare-and-set among them expected `v`, both
/// excluded. A failing compare-and-set among them is linearized after `W`, so it completed at
/// or after `t`: excluded if its outcome was reported; if it has no response at all it may be
/// left out as well. Writes simply overwrite. So the shortened order is still valid.
fn set_aside_unobserved(known: &[Item<'_>], unknown: &mut Vec<Item<'_>>) -> usize {
    let mut observed: HashSet<u64> = HashSet::new();
    // The latest completion of a completed compare-and-set that may have failed.
    let mut latest_failure: Option<u64> = None;
    for item in known.iter().chain(unknown.iter()) {
        match item.step {
            Step::Get(Some(v)) => {
                observed.insert(v);
            }
            Step::Get(None) | Step::Put(_) => {}
            Step::Cas {
                expected,
                succeeded,
                ..
            } => {
                if let Some(v) = expected {
                    observed.insert(v);
                }
                let known_completion = item.op.complete.is_some();
                if known_completion && succeeded != Some(true) {
                    latest_failure = latest_failure.max(Some(item.complete));
                }
            }
        }
    }
    let before = unknown.len();
    unknown.retain(|item| {
        let value_seen = item.step.written().is_some_and(|v| observed.contains(&v));
        let failure_after = latest_failure.is_some_and(|c| c >= item.invoke);
        value_seen || failure_after
    });
    before - unknown.len()
}

fn check_key(key: &str, ops: &[&Op], deadline: Option<Instant>) -> Outcome {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for item in ops.iter().filter_map(|op| prepare(op)) {
        if item.op.complete.is_some() {
            known.push(item);
        } else {
            unknown.push(item);
        }
    }
    let set_aside = set_aside_unobserved(&known, &mut unknown);
    // Numbering known operations by invocation keeps the linearized set close to "a prefix
    // plus a few", which the memo key compresses.
    known.sort_by_key(|i| (i.invoke, i.complete));
    unknown.sort_by_key(|i| i.invoke);
    let mut search = Search::new(known, unknown);
    let started = Instant::now();
    match search.run(deadline) {
        Ok(true) => Outcome::Linearizable,
        Ok(false) => Outcome::Violation(search.explain(key, set_aside)),
        Err(()) => Outcome::Inconclusive(format!(
            "key {key:?}: gave up after {:?} and {} explored configurations; at best {} of {} \
             operations with a known outcome could be linearized so far",
            started.elapsed(),
            search.cache_len(),
            search
                .best
                .as_ref()
                .map_or(search.placed_known, |b| b.placed),
            search.known.len(),
        )),
    }
}

/// An operation in the search: an index into the known or the unknown operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    Known(u32),
    Unknown(u32),
}

/// Where the scan of the current configuration is.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Just arrived at a configuration: look for a forced move first.
    Start,
    /// Scanning the event list of known operations at this entry.
    Known(u32),
    /// Scanning pending unknown operations at unknown-list entry `at`.
    Unknown { at: u32, scan: Scan },
}

/// What the scan of pending unknown operations at one configuration needs to know.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// The completion time of the first pending return: only operations invoked by then may
    /// go next.
    limit_time: u64,
    /// Some pending known compare-and-set is waiting for the value to differ from its expected
    /// one (it failed, or its flag is unknown, and it expects the current value): then any
    /// write may help, not just those whose value someone reads.
    any_write_helps: bool,
    /// Some pending known operation needs another value than the current one: a read of
    /// another value, or a compare-and-set expecting another value that did not fail. If there
    /// is no such operation and no write helps either, placing unknown operations is pointless:
    /// every pending known operation that can go next is then a put, a successful
    /// compare-and-set of the current value, or a failing compare-and-set with unknown outcome
    /// that stays failing (read-only ones that fit were forced moves), none of which needs an
    /// unknown write before it, so any unknown operations placed before it can be dropped.
    value_wanted: bool,
}

/// One step of the current partial linearization, to undo it on backtrack.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Event-list entry (for known operations) or unknown-list entry of the placed operation.
    placed: Ref,
    prev_state: Option<u64>,
    /// For an unknown operation, the scan it was placed from, to resume it.
    scan: Option<Scan>,
    /// Placed as a forced move: if it leads nowhere, neither does the parent configuration.
    forced: bool,
}

/// The deepest dead end seen, kept to explain a violation.
#[derive(Debug, Clone)]
struct DeadEnd {
    /// How many known operations were linearized.
    placed: usize,
    /// The last placed operations with the value after each.
    path_tail: Vec<(Ref, Option<u64>)>,
    /// How many operations (known and unknown) were placed in total.
    depth: usize,
    state: Option<u64>,
    /// The pending known operation that completes first, which had to be placed.
    blocker: Option<u32>,
    /// Operations that could have been placed next.
    candidates: Vec<Ref>,
}

const HEAD: u32 = 0;
/// How many operations an explanation lists at most, per section.
const SHOWN: usize = 12;

/// Per-key Wing & Gong search state.
struct Search<'a> {
    known: Vec<Item<'a>>,
    unknown: Vec<Item<'a>>,
    /// Event list of known operations: entry 0 is the head sentinel, `tail` the tail sentinel,
    /// the rest are call and return events sorted by time (calls first on ties, so operations
    /// that touch in time count as concurrent).
    ev_op: Vec<u32>,
    ev_call: Vec<bool>,
    /// For a call entry, its return entry.
    ev_match: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    tail: u32,
    /// Pending unknown operations in two lists ordered by invocation: those whose value some
    /// operation reads (from head sentinel 0 to tail sentinel `read_tail`), and the others
    /// (from `other_head` to `other_tail`), which only matter when any write may help. Entry
    /// `i + 1` is unknown operation `i`.
    unext: Vec<u32>,
    uprev: Vec<u32>,
    read_tail: u32,
    other_head: u32,
    other_tail: u32,
    /// Linearized known operations (by index in `known`) and unknown ones.
    kbits: Vec<u64>,
    ubits: Vec<u64>,
    /// The first word of `kbits` that is not all ones, and one past the last non-zero word.
    kbase: usize,
    ktop: usize,
    placed_known: usize,
    /// Value -> the operations that read it (reads returning it, compare-and-sets expecting
    /// it).
    observers: FastMap<u64, Vec<Ref>>,
    /// The configurations visited so far.
    memo: Memo,
    /// Scratch space for memo keys.
    key: Vec<u64>,
    best: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    fn new(known: Vec<Item<'a>>, unknown: Vec<Item<'a>>) -> Search<'a> {
        let n = known.len();
        // (time, 0 = call / 1 = return, op): sorting puts calls before returns at equal times.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * n);
        for (i, item) in known.iter().enumerate() {
            events.push((item.invoke, 0, i as u32));
            events.push((item.complete, 1, i as u32));
        }
        events.sort_unstable();
        let len = 2 * n + 2;
        let tail = (len - 1) as u32;
        let mut ev_op = vec![0; len];
        let mut ev_call = vec![false; len];
        let mut ev_match = vec![0; len];
        let mut call_entry = vec![0u32; n];
        for (pos, &(_, kind, op)) in events.iter().enumerate() {
            let entry = (pos + 1) as u32;
            ev_op[entry as usize] = op;
            if kind == 0 {
                ev_call[entry as usize] = true;
                call_entry[op as usize] = entry;
            } else {
                ev_match[call_entry[op as usize] as usize] = entry;
            }
        }
        let next = (0..len as u32).map(|i| (i + 1).min(tail)).collect();
        let prev = (0..len as u32).map(|i| i.saturating_sub(1)).collect();
        let u = unknown.len();
        let mut observers: FastMap<u64, Vec<Ref>> = FastMap::default();
        let refs = (0..n as u32)
            .map(Ref::Known)
            .chain((0..u as u32).map(Ref::Unknown));
        for (r, item) in refs.zip(known.iter().chain(unknown.iter())) {
            if let Step::Get(Some(v))
            | Step::Cas {
                expected: Some(v), ..
            } = item.step
            {
                observers.entry(v).or_default().push(r);
            }
        }
        let mut unknown = unknown;
        let (read_tail, other_head, other_tail) = ((u + 1) as u32, (u + 2) as u32, (u + 3) as u32);
        let mut unext = vec![0; u + 4];
        let mut uprev = vec![0; u + 4];
        let (mut last_read, mut last_other) = (0, other_head);
        for (i, item) in unknown.iter_mut().enumerate() {
            item.read_by_someone = item
                .step
                .written()
                .is_some_and(|v| observers.contains_key(&v));
            let last = if item.read_by_someone {
                &mut last_read
            } else {
                &mut last_other
            };
            unext[*last as usize] = (i + 1) as u32;
            uprev[i + 1] = *last;
            *last = (i + 1) as u32;
        }
        unext[last_read as usize] = read_tail;
        uprev[read_tail as usize] = last_read;
        unext[last_other as usize] = other_tail;
        uprev[other_tail as usize] = last_other;
        Search {
            observers,
            kbits: vec![0; n.div_ceil(64)],
            kbase: 0,
            ktop: 0,
            key: Vec::new(),
            ubits: vec![0; u.div_ceil(64)],
            known,
            unknown,
            ev_op,
            ev_call,
            ev_match,
            next,
            prev,
            tail,
            unext,
            uprev,
            read_tail,
            other_head,
            other_tail,
            placed_known: 0,
            memo: Memo::new(u.div_ceil(64)),
            best: None,
        }
    }

    fn cache_len(&self) -> usize {
        self.memo.len()
    }

    /// Runs the search: `Ok(true)` linearizable, `Ok(false)` not, `Err(())` out of time.
    fn run(&mut self, deadline: Option<Instant>) -> Result<bool, ()> {
        let mut state: Option<u64> = None;
        let mut stack: Vec<Frame> = Vec::new();
        let mut cursor = Cursor::Start;
        let mut steps: u64 = 0;
        loop {
            if steps.is_multiple_of(256) && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(());
            }
            steps += 1;
            match cursor {
                Cursor::Start => {
                    let first = self.next[HEAD as usize];
                    if first == self.tail {
                        // Every operation with a known completion is linearized; pending
                        // unknown ones are taken never to have happened.
                        return Ok(true);
                    }
                    match self.forced_move(state) {
                        Some((entry, after)) => {
                            let step = self.known[self.ev_op[entry as usize] as usize].step;
                            if !redundant(&stack, step, after) && self.place_known(entry, after) {
                                stack.push(Frame {
                                    placed: Ref::Known(entry),
                                    prev_state: state,
                                    scan: None,
                                    forced: true,
                                });
                                state = after;
                            } else {
                                // The forced successor was already explored, is dominated, or
                                // does as well without the unknown operation just placed: this
                                // configuration leads nowhere either.
                                match self.backtrack(&mut stack, &mut state) {
                                    Some(c) => cursor = c,
                                    None => return Ok(false),
                                }
                            }
                        }
                        None => cursor = Cursor::Known(first),
                    }
                }
                Cursor::Known(entry) => {
                    if !self.ev_call[entry as usize] {
                        // The earliest pending completion: nothing invoked later may go next.
                        // Unknown operations are tried only when some pending operation needs a
                        // different value (see `Scan`); otherwise go straight to the end.
                        let scan = self.scan(entry, state);
                        let at = if scan.any_write_helps || scan.value_wanted {
                            self.unext[0]
                        } else {
                            self.read_tail
                        };
                        cursor = Cursor::Unknown { at, scan };
                        continue;
                    }
                    let step = self.known[self.ev_op[entry as usize] as usize].step;
                    // Read-only candidates that fit were taken as forced moves.
                    if let Some(after) = step.apply(state)
                        && !redundant(&stack, step, after)
                        && self.place_known(entry, after)
                    {
                        stack.push(Frame {
                            placed: Ref::Known(entry),
                            prev_state: state,
                            scan: None,
                            forced: false,
                        });
                        state = after;
                        cursor = Cursor::Start;
                        continue;
                    }
                    cursor = Cursor::Known(self.next[entry as usize]);
                }
                Cursor::Unknown { at, scan } => {
                    let end = at == self.read_tail
                        || at == self.other_tail
                        || self.unknown[at as usize - 1].invoke > scan.limit_time;
                    if end {
                        let in_read_list = at == self.read_tail
                            || (at != self.other_tail
                                && self.unknown[at as usize - 1].read_by_someone);
                        if in_read_list && scan.any_write_helps {
                            cursor = Cursor::Unknown {
                                at: self.unext[self.other_head as usize],
                                scan,
                            };
                            continue;
                        }
                        match self.backtrack(&mut stack, &mut state) {
                            Some(c) => cursor = c,
                            None => return Ok(false),
                        }
                        continue;
                    }
                    let step = self.unknown[at as usize - 1].step;
                    // An unknown operation that leaves the value alone is the same as one
                    // that never happened, so it is never placed. One that changes it is only
                    // worth placing if the next operation can make use of the new value:
                    // otherwise that next operation does as well without it (it could not be
                    // placed here before only if it needed the value changed, which is what
                    // `any_write_helps` and `observed_next` look for), and placing it from the
                    // current configuration is explored anyway.
                    if let Some(after) = step.apply(state).filter(|a| *a != state)
                        && !redundant(&stack, step, after)
                        && (scan.any_write_helps || self.observed_next(after, scan.limit_time))
                        && self.place_unknown(at, after)
                    {
                        stack.push(Frame {
                            placed: Ref::Unknown(at),
                            prev_state: state,
                            scan: Some(scan),
                            forced: false,
                        });
                        state = after;
                        cursor = Cursor::Start;
                        continue;
                    }
                    cursor = Cursor::Unknown {
                        at: self.unext[at as usize],
                        scan,
                    };
                }
            }
        }
    }

    /// Prepares the scan of pending unknown operations once the known candidates (the calls
    /// before return entry `limit`) are exhausted.
    fn scan(&self, limit: u32, state: Option<u64>) -> Scan {
        let mut any_write_helps = false;
        let mut value_wanted = false;
        let mut entry = self.next[HEAD as usize];
        while entry != limit {
            match self.known[self.ev_op[entry as usize] as usize].step {
                Step::Cas {
                    expected,
                    succeeded,
                    ..
                } if succeeded != Some(true) && expected == state => any_write_helps = true,
                Step::Get(Some(v))
                | Step::Cas {
                    expected: Some(v),
                    succeeded: Some(true) | None,
                    ..
                } if state != Some(v) => value_wanted = true,
                _ => {}
            }
            entry = self.next[entry as usize];
        }
        Scan {
            limit_time: self.known[self.ev_op[limit as usize] as usize].complete,
            any_write_helps,
            value_wanted,
        }
    }

    /// Whether a pending operation invoked by `limit_time` reads `value` (a read returning it
    /// or a compare-and-set expecting it), so that writing `value` now may be of use.
    fn observed_next(&self, value: Option<u64>, limit_time: u64) -> bool {
        let Some(readers) = value.and_then(|v| self.observers.get(&v)) else {
            return false;
        };
        readers.iter().any(|r| match *r {
            Ref::Known(i) => {
                self.kbits[i as usize / 64] & (1 << (i % 64)) == 0
                    && self.known[i as usize].invoke <= limit_time
            }
            Ref::Unknown(i) => {
                self.ubits[i as usize / 64] & (1 << (i % 64)) == 0
                    && self.unknown[i as usize].invoke <= limit_time
            }
        })
    }

    /// A pending read-only operation that can go next, if any (see the module doc for why
    /// the search may commit to it).
    fn forced_move(&self, state: Option<u64>) -> Option<(u32, Option<u64>)> {
        let mut entry = self.next[HEAD as usize];
        while self.ev_call[entry as usize] {
            let step = self.known[self.ev_op[entry as usize] as usize].step;
            if step.read_only() && step.apply(state).is_some() {
                return Some((entry, state));
            }
            entry = self.next[entry as usize];
        }
        None
    }

    /// Linearizes the known operation whose call is `entry`, unless the resulting
    /// configuration is already known; returns whether it did.
    fn place_known(&mut self, entry: u32, after: Option<u64>) -> bool {
        let op = self.ev_op[entry as usize] as usize;
        self.set_known(op);
        if !self.visit(after) {
            self.clear_known(op);
            return false;
        }
        self.placed_known += 1;
        let ret = self.ev_match[entry as usize];
        self.unlink(entry);
        self.unlink(ret);
        true
    }

    /// Linearizes the unknown operation at unknown-list entry `at`, unless the resulting
    /// configuration is already known; returns whether it did.
    fn place_unknown(&mut self, at: u32, after: Option<u64>) -> bool {
        let op = at as usize - 1;
        self.ubits[op / 64] |= 1 << (op % 64);
        if !self.visit(after) {
            self.ubits[op / 64] &= !(1 << (op % 64));
            return false;
        }
        let (p, n) = (self.uprev[at as usize], self.unext[at as usize]);
        self.unext[p as usize] = n;
        self.uprev[n as usize] = p;
        true
    }

    /// Undoes the top frame (and any forced frames whose parent thereby fails) and returns
    /// where to continue scanning, or `None` if the whole search space is exhausted.
    fn backtrack(&mut self, stack: &mut Vec<Frame>, state: &mut Option<u64>) -> Option<Cursor> {
        self.note_dead_end(stack, *state);
        loop {
            let frame = stack.pop()?;
            *state = frame.prev_state;
            match frame.placed {
                Ref::Known(entry) => {
                    self.clear_known(self.ev_op[entry as usize] as usize);
                    self.placed_known -= 1;
                    // Relink in the reverse order of unlinking.
                    self.relink(self.ev_match[entry as usize]);
                    self.relink(entry);
                    if frame.forced {
                        continue;
                    }
                    return Some(Cursor::Known(self.next[entry as usize]));
                }
                Ref::Unknown(at) => {
                    let op = at as usize - 1;
                    self.ubits[op / 64] &= !(1 << (op % 64));
                    self.unext[self.uprev[at as usize] as usize] = at;
                    self.uprev[self.unext[at as usize] as usize] = at;
                    let scan = frame.scan?;
                    return Some(Cursor::Unknown {
                        at: self.unext[at as usize],
                        scan,
                    });
                }
            }
        }
    }

    fn unlink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    fn relink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        self.prev[n as usize] = x;
    }

    /// Records the current configuration (where nothing more can be placed) if it is the
    /// deepest so far.
    fn note_dead_end(&mut self, stack: &[Frame], state: Option<u64>) {
        let better = self
            .best
            .as_ref()
            .is_none_or(|b| (self.placed_known, stack.len()) > (b.placed, b.depth));
        if !better {
            return;
        }
        let from = stack.len().saturating_sub(SHOWN);
        let path_tail = (from..stack.len())
            .map(|i| {
                let after = stack.get(i + 1).map_or(state, |f| f.prev_state);
                let r = match stack[i].placed {
                    Ref::Known(entry) => Ref::Known(self.ev_op[entry as usize]),
                    Ref::Unknown(at) => Ref::Unknown(at - 1),
                };
                (r, after)
            })
            .collect();
        let mut candidates = Vec::new();
        let mut entry = self.next[HEAD as usize];
        while entry != self.tail && self.ev_call[entry as usize] {
            candidates.push(Ref::Known(self.ev_op[entry as usize]));
            entry = self.next[entry as usize];
        }
        let blocker = (entry != self.tail).then(|| self.ev_op[entry as usize]);
        let limit = blocker.map_or(u64::MAX, |b| self.known[b as usize].complete);
        for (head, tail) in [(0, self.read_tail), (self.other_head, self.other_tail)] {
            let mut at = self.unext[head as usize];
            while at != tail && self.unknown[at as usize - 1].invoke <= limit {
                candidates.push(Ref::Unknown(at - 1));
                at = self.unext[at as usize];
            }
        }
        self.best = Some(DeadEnd {
            placed: self.placed_known,
            path_tail,
            depth: stack.len(),
            state,
            blocker,
            candidates,
        });
    }

    /// The memo check: returns `false` if a configuration with the same known operations, the
    /// same value and a subset of the currently placed unknown operations was visited before
    /// (it dominates this one, which therefore cannot succeed where it did not); otherwise
    /// records the current configuration and returns `true`.
    fn visit(&mut self, state: Option<u64>) -> bool {
        // The key: the value, then the known set compressed as (index of the first word that
        // is not all ones, the words from there to the last non-zero one). Values that no
        // operation reads (no read returns them, no compare-and-set expects them) all behave
        // the same from here on (reads and swaps fail on each of them, writes replace them), so
        // they share one key: configurations that differ only in which unread value the
        // register holds are explored once. With many blind writes this is most of them.
        let base = self.kbase;
        self.key.clear();
        match state {
            None => self.key.extend([0, 0, base as u64]),
            Some(v) if !self.observers.contains_key(&v) => self.key.extend([2, 0, base as u64]),
            Some(v) => self.key.extend([1, v, base as u64]),
        }
        self.key
            .extend_from_slice(&self.kbits[base..self.ktop.max(base)]);
        self.memo.visit(&self.key, &self.ubits)
    }

    fn set_known(&mut self, op: usize) {
        let w = op / 64;
        self.kbits[w] |= 1 << (op % 64);
        self.ktop = self.ktop.max(w + 1);
        while self.kbits.get(self.kbase) == Some(&u64::MAX) {
            self.kbase += 1;
        }
    }

    fn clear_known(&mut self, op: usize) {
        let w = op / 64;
        self.kbits[w] &= !(1 << (op % 64));
        self.kbase = self.kbase.min(w);
        while self.ktop > 0 && self.kbits[self.ktop - 1] == 0 {
            self.ktop -= 1;
        }
    }

    fn item(&self, r: Ref) -> &Item<'a> {
        match r {
            Ref::Known(i) => &self.known[i as usize],
            Ref::Unknown(i) => &self.unknown[i as usize],
        }
    }

    /// The human-readable explanation of a violation, from the deepest dead end.
    fn explain(&self, key: &str, set_aside: usize) -> String {
        let mut out = format!(
            "key {key:?}: not linearizable ({} operations with a known outcome, {} with an \
             unknown outcome",
            self.known.len(),
            self.unknown.len()
        );
        if set_aside > 0 {
            let _ = write!(
                out,
                ", plus {set_aside} unknown-outcome writes nobody observed"
            );
        }
        out.push_str(")\n");
        let Some(best) = &self.best else {
            out.push_str("(no dead end recorded)");
            return out;
        };
        let _ = writeln!(
            out,
            "at most {} of the {} operations with a known outcome can be linearized; the last \
             operations of a longest linearization, with the value after each:",
            best.placed,
            self.known.len()
        );
        if best.path_tail.is_empty() {
            out.push_str("  (none: the very first operation cannot be placed)\n");
        }
        for (r, after) in &best.path_tail {
            let _ = writeln!(out, "  {}  => {}", describe(self.item(*r).op), show(*after));
        }
        let _ = writeln!(out, "the value is then {}", show(best.state));
        if let Some(b) = best.blocker {
            let _ = writeln!(
                out,
                "and this operation cannot take effect before it completes:\n  {}",
                describe(self.known[b as usize].op)
            );
            // Who could have produced the value it needed, if it needed a particular one.
            let needed = match self.known[b as usize].step {
                Step::Get(Some(v))
                | Step::Cas {
                    expected: Some(v), ..
                } => Some(v),
                _ => None,
            };
            if let Some(v) = needed {
                let writers: Vec<&Item<'_>> = self
                    .known
                    .iter()
                    .chain(&self.unknown)
                    .filter(|i| i.step.written() == Some(v))
                    .collect();
                if writers.is_empty() {
                    let _ = writeln!(out, "  (no operation on this key writes {v})");
                }
                for w in writers.iter().take(3) {
                    let _ = writeln!(out, "  ({v} is written by {})", describe(w.op));
                }
            }
        }
        out.push_str("operations with a known outcome that could take effect next:\n");
        let (known, unknown): (Vec<Ref>, Vec<Ref>) = best
            .candidates
            .iter()
            .partition(|r| matches!(r, Ref::Known(_)));
        for r in known.iter().take(2 * SHOWN) {
            let item = self.item(*r);
            let why = match item.step.apply(best.state) {
                None => format!("impossible while the value is {}", show(best.state)),
                Some(_) => "possible, but nothing fits after it".to_string(),
            };
            let _ = writeln!(out, "  {}: {why}", describe(item.op));
        }
        if known.len() > 2 * SHOWN {
            let _ = writeln!(out, "  ... and {} more", known.len() - 2 * SHOWN);
        }
        if !unknown.is_empty() {
            // Those whose value somebody reads are the interesting ones.
            let mut shown: Vec<Ref> = unknown
                .iter()
                .copied()
                .filter(|r| self.item(*r).read_by_someone)
                .take(3)
                .collect();
            if shown.is_empty() {
                shown = unknown.iter().copied().take(3).collect();
            }
            let _ = writeln!(
                out,
                "and {} pending operations with an unknown outcome, none of which helps, e.g.:",
                unknown.len()
            );
            for r in shown {
                let _ = writeln!(out, "  {}", describe(self.item(r).op));
            }
        }
        out
    }
}

/// Whether placing an operation with `step`, giving value `after`, right after an unknown
/// operation would be pointless because it gives the same result without that unknown
/// operation: then the unknown operation had no effect anybody saw, and the same placement
/// without it is explored from the parent configuration (where it leaves strictly more options
/// open). Without this, a dead end with many pending unknown writes would try every sequence
/// of them, each overwriting the previous one.
fn redundant(stack: &[Frame], step: Step, after: Option<u64>) -> bool {
    stack.last().is_some_and(|top| {
        matches!(top.placed, Ref::Unknown(_)) && step.apply(top.prev_state) == Some(after)
    })
}

/// The memo of visited configurations: for each key (value and known set), the sets of
/// unknown operations it was visited with. A search may visit millions of configurations, so
/// everything lives in a few flat vectors: one allocation per configuration would dominate the
/// time (and freeing them, too) and inflate memory.
struct Memo {
    /// Hash of a key -> the last entry added with that hash.
    index: FastMap<u64, usize>,
    entries: Vec<MemoEntry>,
    /// The keys, back to back.
    keys: Vec<u64>,
    /// Unknown-operation sets, `set_words` words each, back to back.
    sets: Vec<u64>,
    /// For each set, the previous set of the same entry.
    set_prev: Vec<usize>,
    set_words: usize,
}

/// One key in the [`Memo`].
#[derive(Debug, Clone, Copy)]
struct MemoEntry {
    key_start: usize,
    key_len: usize,
    /// The previous entry with the same hash (a collision), or `NONE`.
    prev_same_hash: usize,
    /// The last set recorded for this key.
    last_set: usize,
}

const NONE: usize = usize::MAX;

impl Memo {
    fn new(set_words: usize) -> Memo {
        Memo {
            index: FastMap::default(),
            entries: Vec::new(),
            keys: Vec::new(),
            sets: Vec::new(),
            set_prev: Vec::new(),
            set_words,
        }
    }

    /// How many configurations are recorded.
    fn len(&self) -> usize {
        self.set_prev.len()
    }

    /// Returns `false` if `key` was recorded with a subset of `unknown`; otherwise records
    /// (`key`, `unknown`) and returns `true`. Sets that the new one makes redundant (its
    /// supersets) are kept: they cost a little checking time but never change an answer.
    fn visit(&mut self, key: &[u64], unknown: &[u64]) -> bool {
        let mut hasher = FastHasher::default();
        for &word in key {
            hasher.add(word);
        }
        let hash = hasher.finish();
        let mut at = self.index.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let e = self.entries[at];
            if self.keys[e.key_start..e.key_start + e.key_len] == *key {
                break;
            }
            at = e.prev_same_hash;
        }
        if at == NONE {
            self.entries.push(MemoEntry {
                key_start: self.keys.len(),
                key_len: key.len(),
                prev_same_hash: self.index.get(&hash).copied().unwrap_or(NONE),
                last_set: NONE,
            });
            self.keys.extend_from_slice(key);
            at = self.entries.len() - 1;
            self.index.insert(hash, at);
        }
        let w = self.set_words;
        let mut set = self.entries[at].last_set;
        while set != NONE {
            if is_subset(&self.sets[set * w..(set + 1) * w], unknown) {
                return false;
            }
            set = self.set_prev[set];
        }
        self.set_prev.push(self.entries[at].last_set);
        self.sets.extend_from_slice(unknown);
        self.entries[at].last_set = self.set_prev.len() - 1;
        true
    }
}

/// A hash map with a fast multiplicative hasher: memo keys are plain words and are not
/// attacker-controlled, and hashing them is a large part of the search time.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Default, Clone, Copy)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply only carries low input bits upwards; fold the high bits back down so
        // that the bucket index (low bits) depends on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// A register value for messages.
fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

/// A time in nanoseconds as exact milliseconds.
fn time(t: u64) -> String {
    format!("{}.{:06}ms", t / 1_000_000, t % 1_000_000)
}

/// One operation for messages, e.g. `client 3: get -> 7 [1.000000ms .. 1.200000ms]`.
fn describe(op: &Op) -> String {
    let what = match &op.kind {
        OpKind::Put { value, .. } => format!("put {value}"),
        OpKind::Get { result, .. } => format!("get -> {}", show(*result)),
        OpKind::Cas {
            expected,
            new,
            succeeded,
            ..
        } => format!(
            "cas {} -> {new} {}",
            show(*expected),
            match succeeded {
                Some(true) => "succeeded",
                Some(false) => "failed",
                None => "(outcome unknown)",
            }
        ),
    };
    let end = op.complete.map_or_else(|| "?".to_string(), time);
    format!(
        "client {}: {what} [{} .. {end}]",
        op.client,
        time(op.invoke)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(60);

    fn put(client: usize, key: &str, value: u64, invoke: u64, complete: Option<u64>) -> Op {
        Op {
            client,
            invoke,
            complete,
            kind: OpKind::Put {
                key: key.into(),
                value,
            },
        }
    }

    fn get(client: usize, key: &str, result: Option<u64>, invoke: u64, complete: u64) -> Op {
        Op {
            client,
            invoke,
            complete: Some(complete),
            kind: OpKind::Get {
                key: key.into(),
                result,
            },
        }
    }

    fn cas(
        client: usize,
        key: &str,
        (expected, new): (Option<u64>, u64),
        succeeded: Option<bool>,
        invoke: u64,
        complete: Option<u64>,
    ) -> Op {
        Op {
            client,
            invoke,
            complete,
            kind: OpKind::Cas {
                key: key.into(),
                expected,
                new,
                succeeded,
            },
        }
    }

    fn violation(outcome: Outcome) -> String {
        match outcome {
            Outcome::Violation(msg) => msg,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&[], BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            get(0, "k", None, 0, 10),
            put(0, "k", 1, 20, Some(30)),
            get(1, "k", Some(1), 40, 50),
            put(1, "k", 2, 60, Some(70)),
            get(0, "k", Some(2), 80, 90),
            cas(0, "k", (Some(2), 3), Some(true), 100, Some(110)),
            cas(1, "k", (Some(2), 4), Some(false), 120, Some(130)),
            get(1, "k", Some(3), 140, 150),
            cas(0, "other", (None, 9), Some(true), 0, Some(5)),
            get(0, "other", Some(9), 6, 7),
        ];
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn concurrent_ops_linearizable_in_one_order_only() {
        // The two puts overlap; the reads after them show put 2 went first, then put 1.
        let h = vec![
            put(0, "k", 1, 0, Some(100)),
            put(1, "k", 2, 10, Some(90)),
            get(2, "k", Some(2), 20, 30),
            get(3, "k", Some(1), 110, 120),
        ];
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
        // Reading 1 and then, strictly later, 2 needs the opposite order too: impossible.
        let mut bad = h.clone();
        bad.push(get(2, "k", Some(2), 130, 140));
        violation(check(&bad, BUDGET));
    }

    #[test]
    fn stale_read_is_a_violation() {
        let h = vec![
            put(0, "k", 1, 0, Some(10)),
            put(0, "k", 2, 20, Some(30)),
            get(1, "k", Some(1), 40, 50),
        ];
        let msg = violation(check(&h, BUDGET));
        assert!(msg.contains("key \"k\""), "{msg}");
        assert!(msg.contains("client 1: get -> 1"), "{msg}");
    }

    #[test]
    fn lost_write_is_a_violation() {
        let h = vec![
            put(0, "k", 1, 0, Some(10)),
            get(1, "k", Some(1), 5, 15),
            put(2, "k", 2, 20, Some(30)),
            get(1, "k", Some(1), 40, 50),
            get(0, "k", Some(1), 60, 70),
        ];
        let msg = violation(check(&h, BUDGET));
        assert!(msg.contains("put 2"), "{msg}");
    }

    #[test]
    fn violation_on_one_key_is_reported_with_that_key() {
        let h = vec![
            put(0, "good", 1, 0, Some(10)),
            get(1, "good", Some(1), 20, 30),
            put(0, "bad", 1, 0, Some(10)),
            get(1, "bad", None, 20, 30),
        ];
        let msg = violation(check(&h, BUDGET));
        assert!(msg.starts_with("key \"bad\""), "{msg}");
    }

    #[test]
    fn cas_outcomes_must_be_consistent() {
        let base = vec![put(0, "k", 1, 0, Some(10))];
        // Two concurrent swaps from the same expected value cannot both succeed.
        let mut both = base.clone();
        both.push(cas(1, "k", (Some(1), 2), Some(true), 20, Some(30)));
        both.push(cas(2, "k", (Some(1), 3), Some(true), 20, Some(30)));
        violation(check(&both, BUDGET));
        // One succeeds, the other fails: fine, whichever read follows agrees.
        let mut one = base.clone();
        one.push(cas(1, "k", (Some(1), 2), Some(true), 20, Some(30)));
        one.push(cas(2, "k", (Some(1), 3), Some(false), 20, Some(30)));
        one.push(get(0, "k", Some(2), 40, 50));
        assert_eq!(check(&one, BUDGET), Outcome::Linearizable);
        // A swap that failed although the value matched and nobody else wrote.
        let mut wrong_failure = base.clone();
        wrong_failure.push(cas(1, "k", (Some(1), 2), Some(false), 20, Some(30)));
        violation(check(&wrong_failure, BUDGET));
        // Create-if-absent succeeds only on an absent key.
        let create = vec![
            cas(0, "n", (None, 5), Some(true), 0, Some(10)),
            cas(1, "n", (None, 6), Some(false), 20, Some(30)),
            get(1, "n", Some(5), 40, 50),
        ];
        assert_eq!(check(&create, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn unknown_put_later_observed_is_linearizable() {
        let h = vec![
            put(0, "k", 1, 0, Some(10)),
            put(1, "k", 2, 20, None),
            get(2, "k", Some(1), 30, 40),
            get(2, "k", Some(2), 1_000, 1_010),
            get(0, "k", Some(2), 2_000, 2_010),
        ];
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn unknown_put_never_observed_is_linearizable() {
        let mut h = vec![put(0, "k", 1, 0, Some(10)), put(1, "k", 2, 20, None)];
        for i in 0..20 {
            h.push(get(2, "k", Some(1), 30 + 20 * i, 40 + 20 * i));
        }
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
        // Also when a failed compare-and-set keeps it from being set aside.
        h.push(cas(3, "k", (Some(7), 8), Some(false), 500, Some(510)));
        h.push(get(2, "k", Some(1), 520, 530));
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
    }

    #[test]
    fn unknown_put_observed_before_its_invocation_is_a_violation() {
        let h = vec![
            put(0, "k", 1, 0, Some(10)),
            get(1, "k", Some(2), 20, 30),
            put(2, "k", 2, 40, None),
        ];
        let msg = violation(check(&h, BUDGET));
        assert!(msg.contains("get -> 2"), "{msg}");
    }

    #[test]
    fn unknown_put_cannot_take_effect_twice() {
        // Once overwritten, the value of an unknown put cannot come back.
        let h = vec![
            put(0, "k", 1, 0, Some(10)),
            put(1, "k", 2, 20, None),
            get(2, "k", Some(2), 30, 40),
            put(0, "k", 3, 50, Some(60)),
            get(2, "k", Some(2), 70, 80),
        ];
        violation(check(&h, BUDGET));
    }

    #[test]
    fn unknown_cas_may_or_may_not_take_effect() {
        let observed = vec![
            cas(0, "k", (None, 1), None, 0, None),
            get(1, "k", None, 10, 20),
            get(1, "k", Some(1), 30, 40),
        ];
        assert_eq!(check(&observed, BUDGET), Outcome::Linearizable);
        let not_observed = vec![
            cas(0, "k", (None, 1), Some(true), 0, None),
            get(1, "k", None, 10, 20),
            put(1, "k", 5, 30, Some(40)),
            get(1, "k", Some(5), 50, 60),
        ];
        assert_eq!(check(&not_observed, BUDGET), Outcome::Linearizable);
        // A known completion but an unknown success flag: the swap must have been applied
        // (deterministically) within its interval.
        let unknown_flag = vec![
            put(0, "k", 1, 0, Some(10)),
            cas(1, "k", (Some(1), 2), None, 20, Some(30)),
            get(1, "k", Some(1), 40, 50),
        ];
        violation(check(&unknown_flag, BUDGET));
    }

    #[test]
    fn many_unobserved_unknown_writes_do_not_blow_up() {
        // 200 unknown puts nobody reads, interleaved with reads and failed swaps (which keep
        // them from being set aside), and a stale read at the very end.
        let mut h = vec![put(0, "k", 0, 0, Some(10))];
        let mut t = 100;
        for i in 0..200u64 {
            h.push(put(1 + (i % 4) as usize, "k", 1_000 + i, t, None));
            h.push(get(5, "k", Some(0), t + 5, t + 30));
            h.push(cas(
                6,
                "k",
                (Some(999), 1),
                Some(false),
                t + 10,
                Some(t + 40),
            ));
            t += 50;
        }
        let started = Instant::now();
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
        eprintln!("200 unknown puts, linearizable: {:?}", started.elapsed());
        h.push(put(0, "k", 5, t, Some(t + 10)));
        h.push(get(5, "k", Some(0), t + 20, t + 30));
        let started = Instant::now();
        violation(check(&h, BUDGET));
        eprintln!("200 unknown puts, violation: {:?}", started.elapsed());
    }

    #[test]
    fn zero_budget_is_inconclusive() {
        let h = random_history(7, 2_000, 1, 8);
        assert!(matches!(
            check(&h, Duration::ZERO),
            Outcome::Inconclusive(_)
        ));
    }

    /// A small xorshift PRNG, to keep the tests deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A history produced by a simulated sequential store: each operation takes effect at a
    /// strictly increasing linearization point inside its interval; clients issue one
    /// operation at a time. About 3% of writes get an unknown outcome, half of which take
    /// effect.
    fn random_history(seed: u64, n: usize, keys: usize, clients: usize) -> Vec<Op> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut regs: Vec<Option<u64>> = vec![None; keys];
        let mut busy_until = vec![0u64; clients];
        let mut next_value = 1;
        let mut t = 1_000u64;
        let mut h = Vec::with_capacity(n);
        while h.len() < n {
            t += 1 + rng.below(40);
            let free: Vec<usize> = (0..clients).filter(|&c| busy_until[c] < t).collect();
            if free.is_empty() {
                continue;
            }
            let client = free[rng.below(free.len() as u64) as usize];
            let invoke = (busy_until[client] + 1).max(t - rng.below(300));
            let complete = t + rng.below(300);
            let k = rng.below(keys as u64) as usize;
            let key = format!("key{k}");
            let dice = rng.below(100);
            let unknown = dice < 60 && rng.below(100) < 3;
            let takes_effect = !unknown || rng.below(2) == 0;
            let kind = if dice < 40 {
                let value = next_value;
                next_value += 1;
                if takes_effect {
                    regs[k] = Some(value);
                }
                OpKind::Put { key, value }
            } else if dice < 60 {
                let new = next_value;
                next_value += 1;
                let expected = match rng.below(3) {
                    0 | 1 => regs[k],
                    _ if rng.below(2) == 0 => None,
                    _ => Some(1 + rng.below(next_value)),
                };
                let swaps = regs[k] == expected;
                if swaps && takes_effect {
                    regs[k] = Some(new);
                }
                OpKind::Cas {
                    key,
                    expected,
                    new,
                    succeeded: (!unknown).then_some(swaps),
                }
            } else {
                OpKind::Get {
                    key,
                    result: regs[k],
                }
            };
            busy_until[client] = if unknown { complete + 1_000 } else { complete };
            h.push(Op {
                client,
                invoke,
                complete: (!unknown).then_some(complete),
                kind,
            });
        }
        h
    }

    #[test]
    fn random_linearizable_history_and_corrupted_read() {
        for seed in 1..=3 {
            let h = random_history(seed, 5_000, 3, 8);
            let unknown = h.iter().filter(|o| o.complete.is_none()).count();
            assert!(unknown > 20, "only {unknown} unknown-outcome operations");
            let started = Instant::now();
            let outcome = check(&h, BUDGET);
            eprintln!(
                "seed {seed}: 5000 ops ({unknown} unknown) checked in {:?}",
                started.elapsed()
            );
            assert_eq!(outcome, Outcome::Linearizable);

            // Corrupt a read in the second half to a value that was never written.
            let victim = (h.len() / 2..h.len())
                .find(|&i| matches!(h[i].kind, OpKind::Get { .. }))
                .unwrap();
            let mut garbage = h.clone();
            if let OpKind::Get { result, .. } = &mut garbage[victim].kind {
                *result = Some(u64::MAX);
            }
            let started = Instant::now();
            let msg = violation(check(&garbage, BUDGET));
            eprintln!(
                "seed {seed}: read of a value never written refuted in {:?}",
                started.elapsed()
            );
            let key = h[victim].kind.key().to_string();
            assert!(msg.contains(&format!("key \"{key}\"")), "{msg}");
            assert!(msg.contains(&describe(&garbage[victim])), "{msg}");

            // Make the same read stale instead: return the value of the first completed put
            // on its key, which a later put (also completed before the read started) replaced.
            // Values are unique, so nothing else could have written it again.
            let is_put = |o: &Op| matches!(o.kind, OpKind::Put { .. }) && o.kind.key() == key;
            let first = h
                .iter()
                .find(|o| is_put(o) && o.complete.is_some())
                .unwrap();
            let (first_value, first_done) = match first.kind {
                OpKind::Put { value, .. } => (value, first.complete.unwrap()),
                _ => unreachable!(),
            };
            assert!(h.iter().any(|o| is_put(o)
                && o.invoke > first_done
                && o.complete.is_some_and(|c| c < h[victim].invoke)));
            let mut stale = h.clone();
            if let OpKind::Get { result, .. } = &mut stale[victim].kind {
                *result = Some(first_value);
            }
            let started = Instant::now();
            let msg = violation(check(&stale, BUDGET));
            eprintln!("seed {seed}: stale read refuted in {:?}", started.elapsed());
            assert!(msg.contains(&describe(&stale[victim])), "{msg}");
        }
    }

    /// Exhaustive reference: tries every order (and every subset of the unknown-outcome
    /// operations), with no pruning at all. Only for a handful of operations on one key.
    fn brute_force(history: &[Op]) -> bool {
        // Reads without a response tell nothing; a swap without a response may or may not
        // have happened, whatever it claims.
        let ops: Vec<(u64, Option<u64>, Step)> = history
            .iter()
            .filter(|o| o.complete.is_some() || !matches!(o.kind, OpKind::Get { .. }))
            .map(|o| {
                let step = match &o.kind {
                    OpKind::Put { value, .. } => Step::Put(*value),
                    OpKind::Get { result, .. } => Step::Get(*result),
                    OpKind::Cas {
                        expected,
                        new,
                        succeeded,
                        ..
                    } => Step::Cas {
                        expected: *expected,
                        new: *new,
                        succeeded: if o.complete.is_some() {
                            *succeeded
                        } else {
                            None
                        },
                    },
                };
                (o.invoke, o.complete.map(|c| c.max(o.invoke)), step)
            })
            .collect();
        fn go(ops: &[(u64, Option<u64>, Step)], used: &mut Vec<bool>, state: Option<u64>) -> bool {
            let all_known_done = ops
                .iter()
                .zip(used.iter())
                .all(|(o, u)| *u || o.1.is_none());
            if all_known_done {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // Nothing pending (and known to have completed) may have completed before
                // this one was invoked.
                let blocked = (0..ops.len())
                    .any(|j| j != i && !used[j] && ops[j].1.is_some_and(|c| c < ops[i].0));
                if blocked {
                    continue;
                }
                if let Some(after) = ops[i].2.apply(state) {
                    used[i] = true;
                    let ok = go(ops, used, after);
                    used[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        go(&ops, &mut vec![false; ops.len()], None)
    }

    /// Small histories with few distinct values, many ties in time, unknown outcomes and
    /// random corruption: the checker must agree with the exhaustive reference on each.
    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let (mut linearizable, mut not) = (0, 0);
        for round in 0..30_000 {
            let n = 1 + rng.below(8) as usize;
            let mut state: Option<u64> = None;
            let mut t = 0;
            let mut h = Vec::new();
            for _ in 0..n {
                t += rng.below(4);
                let invoke = t.saturating_sub(rng.below(6));
                let complete = t + rng.below(6);
                let value = 1 + rng.below(3);
                let unknown = rng.below(5) == 0;
                let happens = !unknown || rng.below(2) == 0;
                let kind = match rng.below(3) {
                    0 => {
                        if happens {
                            state = Some(value);
                        }
                        OpKind::Put {
                            key: "k".into(),
                            value,
                        }
                    }
                    1 => {
                        let expected =
                            [None, Some(1), Some(2), Some(3), state][rng.below(5) as usize];
                        let swaps = state == expected;
                        if swaps && happens {
                            state = Some(value);
                        }
                        let mut succeeded = Some(swaps);
                        if unknown || rng.below(8) == 0 {
                            succeeded = None;
                        }
                        OpKind::Cas {
                            key: "k".into(),
                            expected,
                            new: value,
                            succeeded,
                        }
                    }
                    _ => OpKind::Get {
                        key: "k".into(),
                        result: state,
                    },
                };
                let unknown = unknown && !matches!(kind, OpKind::Get { .. });
                h.push(Op {
                    client: h.len(),
                    invoke,
                    complete: (!unknown).then_some(complete),
                    kind,
                });
            }
            // Corrupt some results, and shuffle some times.
            for op in &mut h {
                if rng.below(4) == 0 {
                    match &mut op.kind {
                        OpKind::Get { result, .. } => {
                            *result = [None, Some(1), Some(2), Some(3)][rng.below(4) as usize]
                        }
                        OpKind::Cas { succeeded, .. } if op.complete.is_some() => {
                            *succeeded = Some(rng.below(2) == 0)
                        }
                        _ => {}
                    }
                }
                if rng.below(15) == 0 {
                    op.invoke += rng.below(10);
                    op.complete = op.complete.map(|c| c.max(op.invoke) + rng.below(3));
                }
            }
            let expected = brute_force(&h);
            let got = check(&h, BUDGET);
            assert!(
                !matches!(got, Outcome::Inconclusive(_)),
                "round {round}: inconclusive on {h:#?}"
            );
            assert_eq!(
                got.is_linearizable(),
                expected,
                "round {round}: {got:?} for {h:#?}"
            );
            if expected {
                linearizable += 1;
            } else {
                not += 1;
            }
        }
        eprintln!("{linearizable} linearizable and {not} non-linearizable small histories agreed");
        assert!(
            linearizable > 5_000 && not > 5_000,
            "{linearizable} / {not}"
        );
    }

    #[test]
    fn random_history_single_key_high_concurrency() {
        let h = random_history(42, 10_000, 1, 16);
        let started = Instant::now();
        assert_eq!(check(&h, BUDGET), Outcome::Linearizable);
        eprintln!("10000 ops on one key, 16 clients: {:?}", started.elapsed());
    }
}
