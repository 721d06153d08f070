//! A circuit breaker for any outbound client, with opossum's semantics: every call gets a deadline (a
//! timed-out call is dropped, which cancels it); failures are counted in a rolling window of buckets and
//! the breaker opens once at least `volume_threshold` calls were seen and the failure rate reaches the
//! threshold; after `reset_timeout` it lets exactly `half_open_max_calls` trial calls through, closing on
//! a success and reopening on a failure.
//!
//! State lives behind a `std::sync::Mutex` that is held for a few arithmetic operations and never across an
//! `.await`, so concurrent callers race on one short critical section and "exactly N trial calls" holds
//! however many of them arrive at once. Only the refusals while open skip it, decided from an atomic. Which outcomes count as failures is the caller's choice
//! ([`FailureKinds`]); by default only those that say the service itself is unwell do.

mod core;
mod failures;
mod metrics;
mod window;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use self::core::{Core, Ticket, Transition};
use self::window::RejectionRing;
pub use failures::{CallOutcome, DEFAULT_FAILURE_ON, FailureKinds};
pub use metrics::BreakerMetrics;

/// How one breaker behaves; `name` is the service it protects and labels its logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Deadline of one call; past it the call is cancelled and counted as a timeout.
    pub timeout: Duration,
    /// Failure rate (percent of the calls in the window) at or above which the breaker opens.
    pub error_threshold_percent: u8,
    /// Calls the window must hold before the rate is judged, so one early failure cannot trip it.
    pub volume_threshold: u32,
    /// Span of the rolling window.
    pub rolling_window: Duration,
    /// Buckets the window is cut into; old buckets fall out whole.
    pub buckets: u32,
    /// Time spent open before trial calls are let through.
    pub reset_timeout: Duration,
    /// Trial calls admitted while half-open.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            error_threshold_percent: 50,
            volume_threshold: 10,
            rolling_window: Duration::from_secs(10),
            buckets: 10,
            reset_timeout: Duration::from_secs(30),
            half_open_max_calls: 1,
        }
    }
}

/// What a breaker currently lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused at once until the breaker's wait ends.
    Open,
    /// The wait ended: trial calls decide whether it closes or opens again.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the state gauge: 0 closed, 1 open, 2 half-open.
    fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// The breaker refused the call without making it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {retry_after:?}")]
pub struct Rejected {
    /// Until the next trial call may be admitted.
    pub retry_after: Duration,
}

/// Why [`CircuitBreaker::call`] gave no value.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    #[error(transparent)]
    Rejected(Rejected),
    #[error("the call did not finish within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Inner(E),
}

/// A point-in-time view for admin pages and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub successes: u64,
    pub failures: u64,
    pub rejections: u64,
    /// Failure rate of the window in percent (0 when the window is empty).
    pub error_rate_percent: u64,
}

/// A circuit breaker; clones share the state.
#[derive(Clone)]
pub struct CircuitBreaker(Arc<Inner>);

struct Inner {
    service: String,
    config: BreakerConfig,
    core: Mutex<Core>,
    metrics: Option<BreakerMetrics>,
    rejections_total: Option<Counter>,
    /// While open: nanoseconds after `epoch` when the reset timeout ends (0 before the first opening).
    /// Calls before then are refused from this atomic alone, without the lock; see
    /// [`CircuitBreaker::try_acquire`].
    open_until: AtomicU64,
    epoch: Instant,
    /// The rejections made that way, for the window counts of [`CircuitBreaker::snapshot`].
    fast_rejections: RejectionRing,
}

/// Leave to make one call. Report how it went with [`Permit::record`]; a permit dropped unreported (the
/// caller gave up) counts as a failure only if it was a trial, so an abandoned trial cannot wedge the
/// breaker half-open.
pub struct Permit {
    breaker: CircuitBreaker,
    ticket: Option<Ticket>,
}

impl Permit {
    pub fn record(mut self, failed: bool) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.finish(ticket, failed);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take()
            && ticket.trial
        {
            self.breaker.finish(ticket, true);
        }
    }
}

impl CircuitBreaker {
    pub fn new(
        service: impl Into<String>,
        config: BreakerConfig,
        metrics: Option<BreakerMetrics>,
    ) -> Self {
        let now = Instant::now();
        let core = Core::new(&config, now);
        let service = service.into();
        if let Some(metrics) = &metrics {
            metrics.set_state(&service, BreakerState::Closed.gauge());
        }
        Self(Arc::new(Inner {
            rejections_total: metrics.as_ref().map(|m| m.rejections(&service)),
            fast_rejections: RejectionRing::new(config.rolling_window, config.buckets, now),
            service,
            config,
            core: Mutex::new(core),
            metrics,
            open_until: AtomicU64::new(0),
            epoch: now,
        }))
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0.epoch).as_nanos() as u64
    }

    pub fn service(&self) -> &str {
        &self.0.service
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.0.config
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves plain counters behind, still usable.
        self.0.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a call (returning a permit to report its outcome on) or rejects it while open.
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let now = Instant::now();
        // While open every call is refused, and that is decided from one atomic: the lock that calls to
        // a healthy service take would otherwise be taken by every rejected call too, and with callers
        // on several cores its hand-offs made a rejection's p99 ten times its median. The state cannot
        // leave open before `open_until`, so a stale or late value only sends a call to the slow path.
        let at = self.nanos(now);
        let until = self.0.open_until.load(Ordering::Relaxed);
        if at < until {
            self.0.fast_rejections.record(now);
            self.count_rejection();
            return Err(Rejected {
                retry_after: Duration::from_nanos(until - at),
            });
        }
        let (ticket, transition) = self.lock().acquire(&self.0.config, now);
        if let Some(transition) = transition {
            self.announce(&transition);
        }
        match ticket {
            Ok(ticket) => Ok(Permit {
                breaker: self.clone(),
                ticket: Some(ticket),
            }),
            Err(rejected) => {
                self.count_rejection();
                Err(rejected)
            }
        }
    }

    fn count_rejection(&self) {
        if let Some(counter) = &self.0.rejections_total {
            counter.inc();
        }
    }

    fn finish(&self, ticket: Ticket, failed: bool) {
        let transition = self
            .lock()
            .record(&self.0.config, ticket, failed, Instant::now());
        if let Some(transition) = transition {
            self.announce(&transition);
        }
    }

    /// Runs `call` under the breaker: rejected at once while open, cancelled at the timeout, and its
    /// result classified by `classify` (which turns a result into an outcome) against `failures`.
    pub async fn call<T, E, F>(
        &self,
        call: F,
        failures: FailureKinds,
        classify: impl FnOnce(&Result<T, E>) -> CallOutcome,
    ) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        match tokio::time::timeout(self.0.config.timeout, call).await {
            Ok(result) => {
                permit.record(failures.is_failure(classify(&result)));
                result.map_err(CallError::Inner)
            }
            Err(_) => {
                permit.record(failures.is_failure(CallOutcome::Timeout));
                Err(CallError::Timeout(self.0.config.timeout))
            }
        }
    }

    /// The state as callers would find it: open past its reset timeout reads as half-open, although the
    /// move itself happens when the next call arrives.
    pub fn state(&self) -> BreakerState {
        self.lock().effective_state(&self.0.config, Instant::now())
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let core = self.lock();
        let (successes, failures) = core.window.totals(now);
        let volume = successes + failures;
        BreakerSnapshot {
            state: core.effective_state(&self.0.config, now),
            successes,
            failures,
            rejections: core.window.rejections(now) + self.0.fast_rejections.total(now),
            error_rate_percent: (failures * 100).checked_div(volume).unwrap_or(0),
        }
    }

    fn announce(&self, t: &Transition) {
        match t.to {
            BreakerState::Open => {
                let until = self.nanos(t.at + self.0.config.reset_timeout);
                // The latest opening wins should two announcements cross.
                self.0.open_until.fetch_max(until, Ordering::Relaxed);
            }
            // A fresh window, as `Core` starts one for its own counts.
            BreakerState::Closed => self.0.fast_rejections.clear(),
            BreakerState::HalfOpen => {}
        }
        let volume = t.successes + t.failures;
        let error_rate = (t.failures * 100).checked_div(volume).unwrap_or(0);
        tracing::warn!(
            service = %self.0.service,
            from = t.from.as_str(),
            to = t.to.as_str(),
            failures = t.failures,
            successes = t.successes,
            error_rate_percent = error_rate,
            error_threshold_percent = self.0.config.error_threshold_percent,
            volume_threshold = self.0.config.volume_threshold,
            "circuit breaker state changed"
        );
        if let Some(metrics) = &self.0.metrics {
            metrics.transition(&self.0.service, t.from.as_str(), t.to.as_str());
            metrics.set_state(&self.0.service, t.to.gauge());
        }
    }
}

#[cfg(test)]
mod tests;
