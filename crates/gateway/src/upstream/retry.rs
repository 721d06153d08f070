//! When a failed upstream attempt may be repeated, how long to wait first, and the budget that keeps
//! retries from multiplying the load on a struggling service.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};

/// The header that makes a POST safe to repeat: the service deduplicates on it.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How the gateway retries requests upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Extra attempts after the first; 0 turns retries off.
    pub max_retries: u32,
    /// The first backoff's upper bound; each further retry doubles it (full jitter below it).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries may add at most this share of the requests seen in the budget window…
    pub budget_ratio: f64,
    /// …plus this many per window, so a quiet service can still be retried.
    pub budget_min_retries: u32,
    pub budget_window: Duration,
    /// The largest body (with a `Content-Length`) buffered so that the request can be sent again; larger
    /// or streamed bodies are sent once.
    pub max_buffered_body_bytes: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            budget_ratio: 0.2,
            budget_min_retries: 10,
            budget_window: Duration::from_secs(10),
            max_buffered_body_bytes: 64 * 1024,
        }
    }
}

/// Requests that may be sent twice without changing the outcome: the idempotent methods, and a POST
/// whose `Idempotency-Key` lets the service recognise the repeat.
pub(crate) fn may_repeat(method: &Method, headers: &HeaderMap) -> bool {
    may_repeat_with(method, headers.contains_key(IDEMPOTENCY_KEY))
}

/// [`may_repeat`] for a request known to carry an `Idempotency-Key` or not.
pub(crate) fn may_repeat_with(method: &Method, idempotency_key: bool) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || (*method == Method::POST && idempotency_key)
}

/// The wait before retry number `retry` (1-based): uniformly random below `base · 2^(retry-1)`, capped
/// ("full jitter"), so callers failing together do not retry together.
pub(crate) fn backoff(config: &RetryConfig, retry: u32) -> Duration {
    platform::backoff::full_jitter(
        config.backoff_base,
        config.backoff_max,
        retry.saturating_sub(1),
    )
}

const BUDGET_BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    requests: u64,
    retries: u64,
}

/// Retries allowed over a rolling window: at most `ratio` of the requests plus a minimum (Finagle's and
/// Linkerd's retry budget). When a service is down for everyone, retries stop at about 20% extra load
/// instead of tripling it.
pub(crate) struct RetryBudget {
    ratio: f64,
    min_retries: u64,
    epoch: Instant,
    bucket_len: Duration,
    buckets: Mutex<[Bucket; BUDGET_BUCKETS]>,
}

impl RetryBudget {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self {
            ratio: config.budget_ratio.max(0.0),
            min_retries: u64::from(config.budget_min_retries),
            epoch: Instant::now(),
            bucket_len: (config.budget_window / BUDGET_BUCKETS as u32)
                .max(Duration::from_millis(1)),
            buckets: Mutex::new([Bucket::default(); BUDGET_BUCKETS]),
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.bucket_len.as_nanos()) as u64
    }

    fn with_current<T>(&self, f: impl FnOnce(&mut [Bucket; BUDGET_BUCKETS], usize) -> T) -> T {
        let slot = self.slot(Instant::now());
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let index = (slot % BUDGET_BUCKETS as u64) as usize;
        if buckets[index].slot != slot {
            buckets[index] = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        // Buckets from before the window are stale and left out of the sums.
        for bucket in buckets.iter_mut() {
            if slot.saturating_sub(bucket.slot) >= BUDGET_BUCKETS as u64 {
                *bucket = Bucket {
                    slot,
                    ..Bucket::default()
                };
            }
        }
        f(&mut buckets, index)
    }

    /// Counts one request (its first attempt).
    pub(crate) fn deposit(&self) {
        self.with_current(|buckets, index| buckets[index].requests += 1);
    }

    /// Takes one retry from the budget, or says there is none left.
    pub(crate) fn withdraw(&self) -> bool {
        self.with_current(|buckets, index| {
            let requests: u64 = buckets.iter().map(|b| b.requests).sum();
            let retries: u64 = buckets.iter().map(|b| b.retries).sum();
            let allowed = self.min_retries as f64 + self.ratio * requests as f64;
            let granted = (retries as f64) < allowed;
            if granted {
                buckets[index].retries += 1;
            }
            granted
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_and_keyed_posts_may_be_repeated() {
        let none = HeaderMap::new();
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, "k-1".parse().unwrap());
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(may_repeat(&method, &none), "{method}");
        }
        assert!(!may_repeat(&Method::POST, &none));
        assert!(!may_repeat(&Method::PATCH, &keyed));
        assert!(may_repeat(&Method::POST, &keyed));
    }

    #[test]
    fn backoff_grows_exponentially_under_its_cap() {
        let config = RetryConfig::default();
        for _ in 0..100 {
            assert!(backoff(&config, 1) <= Duration::from_millis(5));
            assert!(backoff(&config, 3) <= Duration::from_millis(20));
            assert!(backoff(&config, 30) <= Duration::from_millis(200));
        }
    }

    #[test]
    fn the_budget_allows_the_minimum_plus_a_share_of_the_requests() {
        let budget = RetryBudget::new(&RetryConfig {
            budget_ratio: 0.2,
            budget_min_retries: 2,
            budget_window: Duration::from_secs(60),
            ..RetryConfig::default()
        });
        for _ in 0..10 {
            budget.deposit();
        }
        let granted = (0..10).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 4);
    }
}
