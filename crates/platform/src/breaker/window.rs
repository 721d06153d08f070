//! The rolling window of a breaker: a ring of fixed-length buckets, each stamped with the slot (bucket
//! number since the window's epoch) it counts. A bucket whose stamp is older than the window is stale and
//! is reset when reused or skipped when summed, so nothing needs a timer to age counts out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    successes: u64,
    failures: u64,
    rejections: u64,
}

#[derive(Debug)]
pub(super) struct Window {
    epoch: Instant,
    bucket_len: Duration,
    buckets: Vec<Bucket>,
}

impl Window {
    pub(super) fn new(span: Duration, buckets: u32, now: Instant) -> Self {
        let count = buckets.max(1);
        // At least a millisecond per bucket, so the slot arithmetic never divides by zero.
        let bucket_len = (span / count).max(Duration::from_millis(1));
        Self {
            epoch: now,
            bucket_len,
            buckets: vec![Bucket::default(); count as usize],
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch);
        (elapsed.as_nanos() / self.bucket_len.as_nanos()) as u64
    }

    fn current(&mut self, now: Instant) -> &mut Bucket {
        let slot = self.slot(now);
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(slot % len) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        bucket
    }

    pub(super) fn record(&mut self, failed: bool, now: Instant) {
        let bucket = self.current(now);
        if failed {
            bucket.failures += 1;
        } else {
            bucket.successes += 1;
        }
    }

    pub(super) fn record_rejection(&mut self, now: Instant) {
        self.current(now).rejections += 1;
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = &Bucket> {
        let slot = self.slot(now);
        let oldest = slot.saturating_sub(self.buckets.len() as u64 - 1);
        self.buckets
            .iter()
            .filter(move |b| b.slot >= oldest && b.slot <= slot)
    }

    /// Successes and failures inside the window ending now.
    pub(super) fn totals(&self, now: Instant) -> (u64, u64) {
        self.live(now)
            .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures))
    }

    pub(super) fn rejections(&self, now: Instant) -> u64 {
        self.live(now).map(|b| b.rejections).sum()
    }

    pub(super) fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}

/// Bits of a [`RejectionRing`] bucket that hold its count; the slot is in the bits above.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Rejections made without the breaker's lock, in the same buckets as a [`Window`]: each bucket is one
/// atomic holding its slot and its count, updated by compare-and-swap, so concurrent rejections are all
/// counted and a bucket from an earlier slot is restarted rather than added to.
#[derive(Debug)]
pub(super) struct RejectionRing {
    epoch: Instant,
    bucket_len: Duration,
    buckets: Box<[AtomicU64]>,
}

impl RejectionRing {
    pub(super) fn new(span: Duration, buckets: u32, now: Instant) -> Self {
        let count = buckets.max(1);
        Self {
            epoch: now,
            bucket_len: (span / count).max(Duration::from_millis(1)),
            buckets: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch);
        (elapsed.as_nanos() / self.bucket_len.as_nanos()) as u64
    }

    pub(super) fn record(&self, now: Instant) {
        let slot = self.slot(now);
        let bucket = &self.buckets[(slot % self.buckets.len() as u64) as usize];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let next = if current >> COUNT_BITS == slot {
                // A full count stays full rather than spilling into the slot bits.
                current + u64::from(current & COUNT_MASK < COUNT_MASK)
            } else {
                (slot << COUNT_BITS) | 1
            };
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Rejections inside the window ending now.
    pub(super) fn total(&self, now: Instant) -> u64 {
        let slot = self.slot(now);
        let oldest = slot.saturating_sub(self.buckets.len() as u64 - 1);
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .filter(|value| (oldest..=slot).contains(&(value >> COUNT_BITS)))
            .map(|value| value & COUNT_MASK)
            .sum()
    }

    pub(super) fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}
