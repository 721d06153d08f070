//! The circuit breaker around each upstream, seen from outside.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform::auth::Role;
use platform::breaker::BreakerConfig;
use serde_json::Value;
use testkit::assert_problem;

use crate::helpers::{FakeUpstream, GatewayServer, Stack, bearer, config, spawn_gateway};

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
    // One attempt per request, so the breaker's counts are the requests sent (retries.rs covers retries).
    let stack = Stack::spawn_with(|c| {
        c.circuit_breaker = breaker;
        c.retry.max_retries = 0;
    })
    .await;
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

/// A GET on the admin listener, with a token or without.
async fn admin_get(stack: &Stack, bearer: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = testkit::client().get(stack.admin_url(path));
    if let Some(bearer) = bearer {
        request = request.header("authorization", bearer);
    }
    request.send().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn breaker_report(stack: &Stack) -> Value {
    let response = testkit::client()
        .get(stack.admin_url("/readyz"))
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
            get(&stack, &bearer, "/api/v1/users/unavailable")
                .await
                .status(),
            503
        );
    }
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    assert_eq!(
        get(&stack, &bearer, "/api/v1/users/unavailable")
            .await
            .status(),
        503
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
    for path in ["x", "x", "unavailable", "unavailable", "x"] {
        get(&stack, &bearer, &format!("/api/v1/users/{path}")).await;
    }
    // 2 of 5 failed (40%), then 3 of 6 (50%): under 60%.
    get(&stack, &bearer, "/api/v1/users/unavailable").await;
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    // 4 of 7 is 57%, 5 of 8 is 62.5%.
    get(&stack, &bearer, "/api/v1/users/unavailable").await;
    assert_eq!(breaker_report(&stack).await["state"], "closed");
    get(&stack, &bearer, "/api/v1/users/unavailable").await;
    assert_eq!(breaker_report(&stack).await["state"], "open");
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after_without_contacting_the_upstream() {
    let (stack, bearer) = spawn(fast_breaker()).await;
    for _ in 0..5 {
        get(&stack, &bearer, "/api/v1/users/unavailable").await;
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
        .get(stack.admin_url("/metrics"))
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
        get(&stack, &bearer, "/api/v1/users/unavailable").await;
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
        get(&stack, &admin, "/api/v1/users/unavailable").await;
    }
    let customer = stack.bearer(Role::Customer);
    assert_eq!(
        admin_get(&stack, Some(&customer), "/admin/circuit-breakers")
            .await
            .status(),
        403
    );
    let response = admin_get(&stack, None, "/admin/circuit-breakers").await;
    assert_eq!(response.status(), 401);
    let body =
        testkit::json(admin_get(&stack, Some(&admin), "/admin/circuit-breakers").await).await;
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

/// A POST with a body over the size the direct path buffers (64 KiB by default): the direct path hands such
/// requests to the router's handler, so this goes through the other path from a plain GET.
async fn large_post(gateway: &GatewayServer, bearer: &str, path: &str) -> u16 {
    testkit::client()
        .post(gateway.url(path))
        .header("authorization", bearer)
        .body(vec![b'x'; 70 * 1024])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn fifty_bad_requests_from_one_client_leave_every_other_client_unaffected() {
    // The defaults as shipped, two instances so that ejection could happen.
    let first = FakeUpstream::spawn().await;
    let second = FakeUpstream::spawn().await;
    let config = config(&format!("{},{}", first.url(), second.url()));
    let admin = bearer(&config.auth, Role::Admin);
    let gateway = spawn_gateway(config.clone()).await;
    let (mallory, alice) = (
        bearer(&config.auth, Role::Customer),
        bearer(&config.auth, Role::Customer),
    );
    let client = testkit::client();
    // Requests whose content makes the service fail (a plain 500), on both proxy paths.
    for round in 0..25 {
        let response = client
            .get(gateway.url("/api/v1/users/me/fail"))
            .header("authorization", &mallory)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 500, "round {round}");
        assert_eq!(
            large_post(&gateway, &mallory, "/api/v1/users/me/fail").await,
            500
        );
    }
    for _ in 0..10 {
        let response = client
            .get(gateway.url("/api/v1/users/me"))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200);
        assert_eq!(
            large_post(&gateway, &alice, "/api/v1/users/me/preferences").await,
            200
        );
    }
    let report = testkit::json(
        client
            .get(gateway.admin_url("/admin/circuit-breakers"))
            .header("authorization", &admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let users = &report["data"][0];
    assert_eq!(users["state"], "closed", "{report}");
    assert_eq!(users["window"]["failures"], 0, "{report}");
    assert_eq!(users["window"]["successes"], 70, "{report}");
    for endpoint in users["endpoints"].as_array().into_iter().flatten() {
        assert_eq!(endpoint["state"], "healthy", "{report}");
    }
    assert_eq!(first.hits() + second.hits(), 70);
}

#[tokio::test]
async fn an_overloaded_service_still_opens_the_breaker_with_the_default_rule() {
    let stack = Stack::spawn_with(|c| c.retry.max_retries = 0).await;
    let bearer = stack.bearer(Role::Customer);
    for _ in 0..10 {
        assert_eq!(
            get(&stack, &bearer, "/api/v1/users/me/unavailable")
                .await
                .status(),
            503
        );
    }
    assert_eq!(breaker_report(&stack).await["state"], "open");
    let response = get(&stack, &bearer, "/api/v1/users/me").await;
    assert_problem(response, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(stack.upstream.hits(), 10);
}
