//! The one exponential backoff every retry loop uses: a ceiling that doubles per failure in a row, from
//! `min` up to `max`, and a wait drawn below it (jitter), so callers that failed together do not retry
//! together.

use std::time::Duration;

/// The ceiling after `failures` failures in a row: `min · 2^failures`, at most `max`.
pub fn ceiling(min: Duration, max: Duration, failures: u32) -> Duration {
    min.saturating_mul(1u32 << failures.min(20)).min(max)
}

/// "Equal jitter": uniformly in `[c/2, c]` of the [`ceiling`] `c`, for waits that must not collapse to
/// nothing (a reconnect loop should not hammer a server that just refused it).
pub fn equal_jitter(min: Duration, max: Duration, failures: u32) -> Duration {
    let ceiling = micros(ceiling(min, max, failures)).max(1);
    Duration::from_micros(rand::random_range(ceiling / 2..=ceiling))
}

/// "Full jitter": uniformly in `[0, c]`, for retries that should usually go again almost at once.
pub fn full_jitter(min: Duration, max: Duration, failures: u32) -> Duration {
    Duration::from_micros(rand::random_range(0..=micros(ceiling(min, max, failures))))
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}

/// A loop's backoff state: [`equal_jitter`] waits growing with each failure until [`Backoff::reset`].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The wait before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = equal_jitter(self.min, self.max, self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// After a success: the next wait is `min` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_within_bounds_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[7] >= Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn full_jitter_stays_below_the_doubling_ceiling() {
        let (min, max) = (Duration::from_millis(5), Duration::from_millis(200));
        for _ in 0..100 {
            assert!(full_jitter(min, max, 0) <= Duration::from_millis(5));
            assert!(full_jitter(min, max, 2) <= Duration::from_millis(20));
            assert!(full_jitter(min, max, 30) <= Duration::from_millis(200));
        }
        assert_eq!(ceiling(min, max, 40), max);
    }
}
