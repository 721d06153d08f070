//! GCRA (the generic cell rate algorithm) as a pure function of the stored theoretical arrival time and a
//! clock reading, so the in-memory backend, the Redis script (which mirrors it line for line) and the
//! property tests all share one definition. Times are microseconds.

/// A limit in GCRA terms: one request per `emission` µs, up to `capacity` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) emission: u64,
    pub(crate) capacity: u32,
}

impl Quota {
    /// `max_requests` per `window_us`, `burst` at once (0 means `max_requests`).
    pub(crate) fn new(window_us: u64, max_requests: u32, burst: u32) -> Self {
        let max = u64::from(max_requests.max(1));
        Self {
            emission: (window_us / max).max(1),
            capacity: if burst == 0 {
                max_requests.max(1)
            } else {
                burst
            },
        }
    }

    fn tolerance(self) -> u64 {
        self.emission.saturating_mul(u64::from(self.capacity))
    }
}

/// The answer for one request, with what the `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    /// Requests still allowed right now.
    pub(crate) remaining: u64,
    /// µs until the allowance is full again.
    pub(crate) reset_us: u64,
    /// µs until the next request would be allowed (0 when allowed).
    pub(crate) retry_after_us: u64,
}

/// Decides one request at `now` given the stored arrival time (`None` for a new client); returns the
/// verdict and the arrival time to store when the request is admitted.
pub(crate) fn decide(quota: Quota, stored: Option<u64>, now: u64) -> (Verdict, Option<u64>) {
    let tat = stored.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(quota.emission);
    let ahead = new_tat - now;
    let tolerance = quota.tolerance();
    if ahead > tolerance {
        let verdict = Verdict {
            allowed: false,
            remaining: 0,
            reset_us: tat - now,
            retry_after_us: ahead - tolerance,
        };
        return (verdict, None);
    }
    let verdict = Verdict {
        allowed: true,
        remaining: (tolerance - ahead) / quota.emission,
        reset_us: ahead,
        retry_after_us: 0,
    };
    (verdict, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_new_client_may_use_its_whole_burst_at_once_and_then_waits_one_interval() {
        let quota = Quota::new(1_000_000, 10, 0);
        let mut tat = None;
        for expected_remaining in (0..10).rev() {
            let (verdict, next) = decide(quota, tat, 0);
            assert!(verdict.allowed);
            assert_eq!(verdict.remaining, expected_remaining);
            tat = next;
        }
        let (verdict, _) = decide(quota, tat, 0);
        assert!(!verdict.allowed);
        assert_eq!(verdict.retry_after_us, 100_000);
        let (verdict, _) = decide(quota, tat, 100_000);
        assert!(verdict.allowed);
    }

    proptest! {
        #[test]
        fn no_window_ever_admits_more_than_the_limit_plus_the_burst(
            max_requests in 1u32..20,
            burst in 0u32..20,
            gaps in proptest::collection::vec(0u64..200_000, 1..400),
        ) {
            let window = 1_000_000;
            let quota = Quota::new(window, max_requests, burst);
            let mut tat = None;
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                let (verdict, next) = decide(quota, tat, now);
                if verdict.allowed {
                    admitted.push(now);
                    tat = next;
                }
            }
            let bound = u64::from(max_requests) + u64::from(quota.capacity);
            for (i, start) in admitted.iter().enumerate() {
                let inside = admitted[i..].iter().take_while(|t| **t < start + window).count();
                prop_assert!(inside as u64 <= bound, "{inside} admitted in one window, bound {bound}");
            }
        }
    }
}
