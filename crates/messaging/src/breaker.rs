//! The circuit breaker that makes callers fail fast while the broker is known to be down; its cool-down
//! grows by [`platform::backoff`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker currently lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// The broker answered last time: calls go through.
    Closed,
    /// The broker failed recently: calls fail at once until the cool-down ends.
    Open,
    /// The cool-down ended: the next call is a trial.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
}

/// Opens on a connection failure for a cool-down that grows exponentially (with jitter) with consecutive
/// failures; one success closes it. The lock is never held across an `.await`.
#[derive(Debug)]
pub(crate) struct Breaker {
    min: Duration,
    max: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            inner: Mutex::new(Inner {
                failures: 0,
                open_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the two plain fields inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err(wait)` while open: how long until a trial call is allowed.
    pub(crate) fn allow(&self) -> Result<(), Duration> {
        let inner = self.lock();
        match inner.open_until {
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    pub(crate) fn record_success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.open_until = None;
    }

    pub(crate) fn record_failure(&self) {
        let mut inner = self.lock();
        let cool_down = platform::backoff::equal_jitter(self.min, self.max, inner.failures);
        inner.failures = inner.failures.saturating_add(1);
        inner.open_until = Some(Instant::now() + cool_down);
    }

    pub(crate) fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_on_failure_and_closes_on_success() {
        let breaker = Breaker::new(Duration::from_secs(10), Duration::from_secs(20));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow().is_ok());
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.allow().is_err());
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow().is_ok());
    }

    #[test]
    fn an_expired_cool_down_lets_a_trial_through() {
        let breaker = Breaker::new(Duration::from_millis(1), Duration::from_millis(1));
        breaker.record_failure();
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.allow().is_ok());
    }
}
