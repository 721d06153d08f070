//! The circuit breaker around each upstream, seen from outside.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform::auth::Role;
use platform::breaker::BreakerConfig;
use serde_json::Value;

use crate::helpers::{Stack, assert_problem};

fn fast_breaker() -> BreakerConfig {
    BreakerConfig {
        timeout: Duration::from_secs(5),
        error_threshold_percent: 50,
        volume_threshold: 5,
        rolling_window: Duration::from_secs(10),
        buckets: 10,
        reset_timeout: Duration::from_secs(60),
        half_open_max_calls: 1,
    }
}

async fn spawn(breaker: BreakerConfig) -> (Stack, String) {
    let stack = Stack::spawn_with(|c| c.circuit_breaker = breaker).await;
    // Admin: `GET /api/v1/users/{id}` is admin-only, and the test paths look like that route.
    let bearer = stack.bearer(Role::Admin);
    (stack, bearer)
}

async fn get(stack: &Stack, bearer: &str, path: &str) -> reqwest::Response {
    testkit::client()
        .get(stack.url(path))
        .header("authorization", bearer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn breaker_report(stack: &Stack) -> Value {
    let response = testkit::client()
        .get(stack.url("/readyz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    testkit::json(response).await["checks"]["users"]["circuit_breaker"].clone()
}

#[tokio::test]
async fn the_breaker_trips_only_once_the_volume_threshold_is_reached() {
    let (stack, bearer) = spawn(fast_breaker()).await;
    for _ in 0..4 {
        assert_eq!(
            get(&stack, &bearer, "/api/v1/users/fail").await.status(),
            500
        );
    }
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    assert_eq!(
        get(&stack, &bearer, "/api/v1/users/fail").await.status(),
        500
    );
    assert_eq!(breaker_report(&stack).await["state"], "open");
    assert_eq!(stack.upstream.hits(), 5);
}

#[tokio::test]
async fn the_breaker_opens_at_the_configured_error_rate_and_not_below_it() {
    let (stack, bearer) = spawn(BreakerConfig {
        error_threshold_percent: 60,
        ..fast_breaker()
    })
    .await;
    for path in ["x", "x", "fail", "fail", "x"] {
        get(&stack, &bearer, &format!("/api/v1/users/{path}")).await;
    }
    // 2 of 5 failed (40%), then 3 of 6 (50%): under 60%.
    get(&stack, &bearer, "/api/v1/users/fail").await;
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    // 4 of 7 is 57%, 5 of 8 is 62.5%.
    get(&stack, &bearer, "/api/v1/users/fail").await;
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    get(&stack, &bearer, "/api/v1/users/fail").await;
    assert_eq!(breaker_report(&stack).await["state"], "open");
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after_without_contacting_the_upstream() {
    let (stack, bearer) = spawn(fast_breaker()).await;
    for _ in 0..5 {
        get(&stack, &bearer, "/api/v1/users/fail").await;
    }
    let hits = stack.upstream.hits();
    for _ in 0..20 {
        let response = get(&stack, &bearer, "/api/v1/users/me").await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(retry_after.is_some_and(|secs| (1..=60).contains(&secs)));
        assert_problem(response, 503, "UPSTREAM_UNAVAILABLE").await;
    }
    assert_eq!(stack.upstream.hits(), hits);
    assert!(breaker_report(&stack).await["rejections"].as_u64() >= Some(20));
    let metrics = testkit::client()
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(metrics.contains("circuit_breaker_state{service=\"gateway\",upstream=\"users\"} 1"));
    assert!(metrics.contains("circuit_breaker_rejections_total"));
    assert!(metrics.contains("to=\"open\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_breaker_lets_exactly_one_of_many_racing_callers_through_then_closes() {
    let (stack, bearer) = spawn(BreakerConfig {
        reset_timeout: Duration::from_millis(30),
        ..fast_breaker()
    })
    .await;
    for _ in 0..5 {
        get(&stack, &bearer, "/api/v1/users/fail").await;
    }
    testkit::eventually("half-open", Duration::from_secs(5), || async {
        (breaker_report(&stack).await["state"] == "half_open").then_some(())
    })
    .await;
    let hits = stack.upstream.hits();
    let client = testkit::client();
    let answered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let request = client
                .get(stack.url("/api/v1/users/hold"))
                .header("authorization", &bearer)
                .send();
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = request.await.map(|r| r.status().as_u16());
                answered.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    // The trial is held upstream until every other caller has had its answer, so all of them raced it.
    testkit::eventually(
        "every other caller's answer",
        Duration::from_secs(10),
        || async { (answered.load(Ordering::SeqCst) == 199).then_some(()) },
    )
    .await;
    stack.upstream.probe.release_hold.notify_one();
    let mut statuses = Vec::new();
    for caller in callers {
        statuses.push(caller.await.ok().and_then(Result::ok).unwrap_or(0));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 199);
    assert_eq!(stack.upstream.hits(), hits + 1);
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    assert_eq!(get(&stack, &bearer, "/api/v1/users/me").await.status(), 200);
}

#[tokio::test]
async fn a_slow_upstream_is_cut_at_the_breaker_timeout_and_counted_as_a_failure() {
    let (stack, bearer) = spawn(BreakerConfig {
        timeout: Duration::from_millis(50),
        ..fast_breaker()
    })
    .await;
    let started = std::time::Instant::now();
    let response = get(&stack, &bearer, "/api/v1/users/slow").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_problem(response, 504, "UPSTREAM_TIMEOUT").await;
    assert_eq!(breaker_report(&stack).await["failures"], 1);
}

#[tokio::test]
async fn client_errors_from_the_upstream_never_count_against_the_breaker() {
    let (stack, bearer) = spawn(fast_breaker()).await;
    for _ in 0..10 {
        assert_eq!(
            get(&stack, &bearer, "/api/v1/users/missing").await.status(),
            404
        );
    }
    let report = breaker_report(&stack).await;
    assert_eq!(report["state"], "closed");
    assert_eq!(report["failures"], 0);
    assert_eq!(report["successes"], 10);
}

#[tokio::test]
async fn the_admin_view_lists_each_upstream_with_its_breaker_for_admins_only() {
    let (stack, admin) = spawn(fast_breaker()).await;
    for _ in 0..5 {
        get(&stack, &admin, "/api/v1/users/fail").await;
    }
    let customer = stack.bearer(Role::Customer);
    assert_eq!(
        get(&stack, &customer, "/admin/circuit-breakers")
            .await
            .status(),
        403
    );
    let response = testkit::client()
        .get(stack.url("/admin/circuit-breakers"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 401);
    let body = testkit::json(get(&stack, &admin, "/admin/circuit-breakers").await).await;
    let users = &body["data"][0];
    assert_eq!(users["upstream"], "users");
    assert_eq!(users["state"], "open");
    assert_eq!(users["window"]["failures"], 5);
    assert!(
        users["endpoints"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))
    );
}
