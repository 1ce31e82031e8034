//! Bounded exponential back-off with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential back-off: `initial`, doubling up to `max`, each delay jittered down by up to a
/// half so that many clients do not retry in lock step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The next delay to sleep, in `[d/2, d]` where `d` doubles from `initial` to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = d / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(random_u64() % span)
    }

    /// Starts over from `initial`.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The upper bound of any delay.
    pub(crate) fn max(&self) -> Duration {
        self.max
    }
}

/// A cheap random number without a dependency: `RandomState` is randomly keyed per instance.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_bounded() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut prev_cap = Duration::ZERO;
        for i in 0..20 {
            let d = b.next_delay();
            let cap = Duration::from_millis(50)
                .saturating_mul(1 << i.min(10))
                .min(Duration::from_secs(2));
            assert!(d <= cap, "delay {d:?} over cap {cap:?}");
            assert!(d >= cap / 2, "delay {d:?} under half of {cap:?}");
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(50));
        assert_eq!(b.max(), Duration::from_secs(2));
    }
}
