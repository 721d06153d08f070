use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn config() -> BreakerConfig {
    BreakerConfig {
        timeout: Duration::from_millis(50),
        error_threshold_percent: 50,
        volume_threshold: 4,
        rolling_window: Duration::from_secs(10),
        buckets: 10,
        reset_timeout: Duration::from_secs(5),
        half_open_max_calls: 1,
    }
}

/// Drives the state machine with an injected clock, so window math is tested without waiting.
struct Clocked {
    config: BreakerConfig,
    core: Core,
    now: Instant,
}

impl Clocked {
    fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        Self {
            core: Core::new(&config, now),
            config,
            now,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn call(&mut self, failed: bool) -> Result<(), Rejected> {
        let (ticket, _) = self.core.acquire(&self.config, self.now);
        let ticket = ticket?;
        self.core.record(&self.config, ticket, failed, self.now);
        Ok(())
    }
}

#[test]
fn failures_below_the_volume_threshold_never_trip_the_breaker() {
    let mut breaker = Clocked::new(config());
    for _ in 0..3 {
        assert!(breaker.call(true).is_ok());
    }
    assert_eq!(breaker.core.state, BreakerState::Closed);
    assert!(breaker.call(true).is_ok());
    assert_eq!(breaker.core.state, BreakerState::Open);
}

#[test]
fn the_breaker_opens_exactly_when_the_error_rate_reaches_the_threshold() {
    let mut breaker = Clocked::new(BreakerConfig {
        error_threshold_percent: 40,
        volume_threshold: 5,
        ..config()
    });
    for _ in 0..3 {
        breaker.call(false).unwrap_or_else(|e| panic!("{e}"));
    }
    // 1 of 4, then 1 of 5 (20%): under the threshold.
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    breaker.call(false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Closed);
    // 2 of 6 is 33%: still closed; 3 of 7 is 43%: open.
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Closed);
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Open);
}

#[test]
fn failures_older_than_the_rolling_window_are_forgotten() {
    let mut breaker = Clocked::new(config());
    for _ in 0..3 {
        breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    }
    breaker.advance(Duration::from_secs(11));
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Closed);
    assert_eq!(breaker.core.window.totals(breaker.now), (0, 1));
}

#[test]
fn an_open_breaker_rejects_until_the_reset_timeout_then_admits_one_trial() {
    let mut breaker = Clocked::new(config());
    for _ in 0..4 {
        breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    }
    breaker.advance(Duration::from_secs(2));
    let rejected = breaker.call(false).err();
    assert_eq!(
        rejected.map(|r| r.retry_after),
        Some(Duration::from_secs(3))
    );
    breaker.advance(Duration::from_secs(3));
    let (first, _) = breaker.core.acquire(&breaker.config, breaker.now);
    let (second, _) = breaker.core.acquire(&breaker.config, breaker.now);
    assert!(first.is_ok());
    assert!(second.is_err());
    assert_eq!(breaker.core.state, BreakerState::HalfOpen);
}

#[test]
fn a_successful_trial_closes_and_a_failed_one_reopens() {
    let mut breaker = Clocked::new(config());
    for _ in 0..4 {
        breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    }
    breaker.advance(Duration::from_secs(5));
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Open);
    breaker.advance(Duration::from_secs(5));
    breaker.call(false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Closed);
    // The failures that opened it are gone: one more failure does not reopen it.
    breaker.call(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(breaker.core.state, BreakerState::Closed);
}

#[test]
fn by_default_only_what_says_the_service_is_unwell_counts() {
    let kinds = FailureKinds::default();
    for code in [502, 503, 504] {
        assert!(kinds.is_failure(CallOutcome::Status(code)), "{code}");
    }
    for code in [200, 400, 404, 422, 429, 500, 501] {
        assert!(!kinds.is_failure(CallOutcome::Status(code)), "{code}");
    }
    assert!(kinds.is_failure(CallOutcome::ConnectError));
    assert!(kinds.is_failure(CallOutcome::Timeout));
    assert!(kinds.is_failure(CallOutcome::OtherError));
    assert!(!kinds.is_failure(CallOutcome::Success));
}

#[test]
fn failure_kinds_take_codes_and_classes_and_refuse_anything_else() {
    let parse = |names: &[&str]| FailureKinds::from_names(names).unwrap_or_else(|e| panic!("{e}"));
    let only_connect = parse(&["connect"]);
    assert!(!only_connect.is_failure(CallOutcome::Status(503)));
    assert!(!only_connect.is_failure(CallOutcome::Timeout));
    assert!(only_connect.is_failure(CallOutcome::ConnectError));
    let server_errors = parse(&["5xx"]);
    assert!((500..=599).all(|code| server_errors.is_failure(CallOutcome::Status(code))));
    assert!(!server_errors.is_failure(CallOutcome::Status(499)));
    let throttled = parse(&["429", "4xx"]);
    assert!(throttled.is_failure(CallOutcome::Status(400)));
    assert!(!throttled.is_failure(CallOutcome::Status(500)));
    for bad in ["3xx", "200", "600", "reset", ""] {
        assert!(FailureKinds::from_names(&[bad]).is_err(), "{bad}");
    }
}

async fn trip(breaker: &CircuitBreaker) {
    for _ in 0..breaker.config().volume_threshold {
        let _ = breaker
            .call(async { Err::<(), ()>(()) }, FailureKinds::default(), |_| {
                CallOutcome::Status(503)
            })
            .await;
    }
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_trial_call_runs_when_a_thousand_callers_race_a_half_open_breaker() {
    let breaker = CircuitBreaker::new(
        "race",
        BreakerConfig {
            reset_timeout: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            ..config()
        },
        None,
    );
    trip(&breaker).await;
    testkit::eventually("the reset timeout", Duration::from_secs(2), || async {
        (breaker.state() == BreakerState::HalfOpen).then_some(())
    })
    .await;
    let started = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (breaker, started, rejected, release, gate) = (
                breaker.clone(),
                started.clone(),
                rejected.clone(),
                release.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                gate.wait().await;
                let admitted = breaker
                    .call(
                        async {
                            started.fetch_add(1, Ordering::SeqCst);
                            release.notified().await;
                            Ok::<(), ()>(())
                        },
                        FailureKinds::default(),
                        |_| CallOutcome::Success,
                    )
                    .await
                    .is_ok();
                if !admitted {
                    rejected.fetch_add(1, Ordering::SeqCst);
                }
                admitted
            })
        })
        .collect();
    // The trial ends only once every other caller was turned away: a caller that a slow scheduler let
    // reach the breaker after the trial closed it would be a new call, not a second trial.
    testkit::eventually(
        "the trial call and 999 rejections",
        Duration::from_secs(10),
        || async {
            (started.load(Ordering::SeqCst) == 1 && rejected.load(Ordering::SeqCst) == 999)
                .then_some(())
        },
    )
    .await;
    release.notify_waiters();
    let mut admitted = 0;
    for caller in callers {
        if caller.await.unwrap_or(false) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 1);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_call_slower_than_the_timeout_is_cancelled_and_counted_as_a_failure() {
    let breaker = CircuitBreaker::new("slow", config(), None);
    let finished = Arc::new(AtomicUsize::new(0));
    let result = breaker
        .call(
            {
                let finished = finished.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), ()>(())
                }
            },
            FailureKinds::default(),
            |_| CallOutcome::Success,
        )
        .await;
    assert!(matches!(result, Err(CallError::Timeout(_))));
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.snapshot().failures, 1);
}

#[tokio::test]
async fn rejections_while_open_are_counted_and_say_when_to_retry() {
    let breaker = CircuitBreaker::new("svc", config(), None);
    trip(&breaker).await;
    for _ in 0..25 {
        let rejected = breaker.try_acquire().err();
        assert!(
            rejected.is_some_and(
                |r| r.retry_after <= config().reset_timeout && r.retry_after > Duration::ZERO
            ),
            "{rejected:?}"
        );
    }
    assert_eq!(breaker.snapshot().rejections, 25);
}

#[test]
fn a_rejection_ring_counts_per_bucket_and_forgets_buckets_outside_the_window() {
    let start = Instant::now();
    let ring = window::RejectionRing::new(Duration::from_secs(10), 10, start);
    for _ in 0..3 {
        ring.record(start);
    }
    ring.record(start + Duration::from_secs(4));
    assert_eq!(ring.total(start + Duration::from_secs(4)), 4);
    assert_eq!(ring.total(start + Duration::from_secs(12)), 1);
    // The bucket of second 0 is reused at second 10: it restarts rather than adding up.
    ring.record(start + Duration::from_secs(10));
    assert_eq!(ring.total(start + Duration::from_secs(10)), 2);
    ring.clear();
    assert_eq!(ring.total(start + Duration::from_secs(10)), 0);
}
