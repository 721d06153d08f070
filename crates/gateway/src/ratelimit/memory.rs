//! The in-process backend: one arrival time per key behind a short mutex (never held across an await).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::BucketKey;
use super::gcra::{Quota, Verdict, decide};

/// Entries past this many trigger a sweep of the ones whose allowance is full again (they carry no state).
const SWEEP_AT: usize = 100_000;

pub(crate) struct MemoryStore {
    epoch: Instant,
    arrivals: Mutex<HashMap<BucketKey, u64>>,
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn check(&self, key: BucketKey, quota: Quota) -> Verdict {
        let now = self.epoch.elapsed().as_micros() as u64;
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let (verdict, next) = decide(quota, arrivals.get(&key).copied(), now);
        if let Some(tat) = next {
            if arrivals.len() >= SWEEP_AT {
                arrivals.retain(|_, tat| *tat > now);
            }
            arrivals.insert(key, tat);
        }
        verdict
    }
}
