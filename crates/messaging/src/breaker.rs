//! The breaker that makes publishers fail fast while the broker is known to be down.
//!
//! It is not `platform::breaker::CircuitBreaker`, on purpose: that one guards calls to a service and
//! judges their failure *rate* over a rolling window, with a fixed reset timeout and a set number of trial
//! calls. This one guards the single broker connection: one failed connect already means every publish
//! would fail, so one failure opens it; any successful connect closes it, whoever made it; and a broker
//! that stays down is tried less and less often, so its cool-down is a [`Backoff`]. The state it reports is
//! the platform's [`BreakerState`], read the same way in `/readyz`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use platform::backoff::Backoff;
pub use platform::breaker::BreakerState;

#[derive(Debug)]
struct Inner {
    cool_down: Backoff,
    open_until: Option<Instant>,
}

/// Open from a connection failure until its cool-down ends (then half-open: the next connect is a trial);
/// closed by a success. The lock is never held across an `.await`.
#[derive(Debug)]
pub(crate) struct ConnectionBreaker {
    inner: Mutex<Inner>,
}

impl ConnectionBreaker {
    /// Cool-downs start at `min` and double (with jitter) per failure in a row, up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                cool_down: Backoff::new(min, max),
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

    /// `Err(wait)` while open: how long until a trial connect is allowed.
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
        inner.cool_down.reset();
        inner.open_until = None;
    }

    pub(crate) fn record_failure(&self) {
        let mut inner = self.lock();
        let cool_down = inner.cool_down.next_delay();
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
        let breaker = ConnectionBreaker::new(Duration::from_secs(10), Duration::from_secs(20));
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
        let breaker = ConnectionBreaker::new(Duration::from_millis(1), Duration::from_millis(1));
        breaker.record_failure();
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.allow().is_ok());
    }
}
