//! The in-process backend: one arrival time per key, each an atomic decided by compare-and-swap, in a
//! map behind a read-write lock that is written only to add keys or sweep them (never held across an
//! await). A client's requests on different cores therefore never queue on a lock; with one mutex
//! around the map they did, and each hand-off between cores cost more than the decision itself.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::BucketKey;
use super::gcra::{Quota, Verdict, decide};

/// Entries past this many trigger a sweep of the ones whose allowance is full again (they carry no state).
const SWEEP_AT: usize = 100_000;

pub(crate) struct MemoryStore {
    epoch: Instant,
    /// Theoretical arrival times in µs since `epoch`; 0 (never in the future) for a key that has none.
    arrivals: RwLock<HashMap<BucketKey, AtomicU64>>,
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            arrivals: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn check(&self, key: BucketKey, quota: Quota) -> Verdict {
        let now = self.epoch.elapsed().as_micros() as u64;
        {
            let arrivals = self.arrivals.read().unwrap_or_else(|e| e.into_inner());
            if let Some(tat) = arrivals.get(&key) {
                return check_at(tat, quota, now);
            }
        }
        let mut arrivals = self.arrivals.write().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() >= SWEEP_AT {
            arrivals.retain(|_, tat| *tat.get_mut() > now);
        }
        let tat = arrivals.entry(key).or_insert_with(|| AtomicU64::new(0));
        check_at(tat, quota, now)
    }
}

/// One decision on a key's arrival time: retried when another request of the same client stored a new
/// time in between, so each is decided on the time the previous one left, as under a lock.
fn check_at(tat: &AtomicU64, quota: Quota, now: u64) -> Verdict {
    let mut current = tat.load(Ordering::Relaxed);
    loop {
        // A stored time at or before now is the same as none (see `decide`), so 0 needs no special case.
        let (verdict, next) = decide(quota, Some(current), now);
        let Some(next) = next else {
            return verdict;
        };
        match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return verdict,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Client;
    use super::*;

    #[test]
    fn concurrent_requests_of_one_client_are_admitted_exactly_up_to_the_burst() {
        let store = MemoryStore::new();
        let key = BucketKey {
            rule: 0,
            id: 7,
            client: Client::Unknown,
        };
        // 50 per hour: nothing refills during the test.
        let quota = Quota::new(3_600_000_000, 50, 0);
        let admitted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| (0..100).filter(|_| store.check(key, quota).allowed).count())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 50);
    }
}
