//! Rate limiting at the edge: per client, per route and role overrides, in memory or shared via Redis.

use std::time::Duration;

use gateway::{Config, FailMode, LimitRule, RateLimitBackend};
use platform::auth::Role;
use testkit::assert_problem;

use crate::helpers::{FakeUpstream, Stack, closed_port_url, config, spawn_gateway};

fn limit(max_requests: u32) -> LimitRule {
    LimitRule {
        route: None,
        role: None,
        window: Duration::from_secs(60),
        max_requests,
        burst: 0,
    }
}

async fn status(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> u16 {
    let mut request = client.get(url);
    if let Some(bearer) = bearer {
        request = request.header("authorization", bearer);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_client_over_its_limit_gets_a_429_with_retry_after_and_ratelimit_headers() {
    let stack = Stack::spawn_with(|c| c.rate_limit.default = limit(3)).await;
    let client = testkit::client();
    let bearer = stack.bearer(Role::Customer);
    for remaining in (0..3).rev() {
        let response = client
            .get(stack.url("/api/v1/users/me"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    let response = client
        .get(stack.url("/api/v1/users/me"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.headers()["retry-after"], "20");
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    assert_problem(response, 429, "RATE_LIMITED").await;
    assert_eq!(stack.upstream.hits(), 3);
}

#[tokio::test]
async fn each_user_has_a_budget_of_their_own_and_operations_routes_are_never_limited() {
    let stack = Stack::spawn_with(|c| c.rate_limit.default = limit(1)).await;
    let client = testkit::client();
    let (alice, bob) = (stack.bearer(Role::Customer), stack.bearer(Role::Customer));
    let url = stack.url("/api/v1/users/me");
    assert_eq!(status(&client, &url, Some(&alice)).await, 200);
    assert_eq!(status(&client, &url, Some(&alice)).await, 429);
    assert_eq!(status(&client, &url, Some(&bob)).await, 200);
    for url in [
        stack.url("/health"),
        stack.url("/readyz"),
        stack.admin_url("/metrics"),
        stack.admin_url("/readyz"),
    ] {
        for _ in 0..3 {
            assert_eq!(status(&client, &url, None).await, 200, "{url}");
        }
    }
}

#[tokio::test]
async fn a_route_or_role_override_replaces_the_default_limit() {
    let stack = Stack::spawn_with(|c| {
        c.rate_limit.overrides = vec![
            LimitRule {
                role: Some(Role::Admin),
                ..limit(100)
            },
            LimitRule {
                route: Some("POST /api/v1/auth/login".into()),
                ..limit(1)
            },
        ];
        c.rate_limit.default = limit(3);
    })
    .await;
    let client = testkit::client();
    let login = stack.url("/api/v1/auth/login");
    let post = |client: &reqwest::Client| client.post(&login).json(&serde_json::json!({})).send();
    assert_eq!(
        post(&client).await.map(|r| r.status().as_u16()).ok(),
        Some(200)
    );
    assert_eq!(
        post(&client).await.map(|r| r.status().as_u16()).ok(),
        Some(429)
    );
    let admin = stack.bearer(Role::Admin);
    for _ in 0..10 {
        assert_eq!(
            status(&client, &stack.url("/api/v1/users/me"), Some(&admin)).await,
            200
        );
    }
}

fn redis_backend(url: &str, prefix: &str, fail_mode: FailMode) -> RateLimitBackend {
    RateLimitBackend::Redis {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        connect_timeout: Duration::from_millis(500),
        // Generous: a slow CI machine must not fail open and make the shared count look wrong.
        timeout: Duration::from_millis(500),
        fail_mode,
    }
}

fn redis_config(upstream: &FakeUpstream, backend: RateLimitBackend, max: u32) -> Config {
    let mut config = config(&upstream.url());
    config.rate_limit.default = limit(max);
    config.rate_limit.backend = backend;
    config
}

#[tokio::test]
async fn two_gateways_sharing_redis_admit_at_most_the_limit_in_total() {
    let upstream = FakeUpstream::spawn().await;
    let prefix = format!("test:{}:", uuid::Uuid::now_v7().simple());
    let backend = redis_backend("redis://127.0.0.1:6379/", &prefix, FailMode::Closed);
    let first = spawn_gateway(redis_config(&upstream, backend.clone(), 10)).await;
    let second = spawn_gateway(redis_config(&upstream, backend, 10)).await;
    let client = testkit::client();
    let mut admitted = 0;
    for i in 0..30 {
        let gateway = if i % 2 == 0 { &first } else { &second };
        // Anonymous, so both gateways key the caller by the same IP.
        let code = client
            .post(gateway.url("/api/v1/auth/login"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if code == 200 {
            admitted += 1;
        } else {
            assert_eq!(code, 429);
        }
    }
    assert_eq!(admitted, 10);
}

#[tokio::test]
async fn with_redis_unreachable_fail_open_admits_and_fail_closed_refuses_quickly() {
    let upstream = FakeUpstream::spawn().await;
    let dead = closed_port_url().await.replace("http://", "redis://");
    let open = spawn_gateway(redis_config(
        &upstream,
        redis_backend(&dead, "test:", FailMode::Open),
        1,
    ))
    .await;
    let closed = spawn_gateway(redis_config(
        &upstream,
        redis_backend(&dead, "test:", FailMode::Closed),
        1,
    ))
    .await;
    let client = testkit::client();
    let bearer = format!(
        "Bearer {}",
        platform::auth::JwtKeys::new(&config(&upstream.url()).auth)
            .issue(uuid::Uuid::now_v7(), "a@example.com", Role::Customer)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    );
    for _ in 0..3 {
        assert_eq!(
            status(&client, &open.url("/api/v1/users/me"), Some(&bearer)).await,
            200
        );
    }
    let started = std::time::Instant::now();
    let response = client
        .get(closed.url("/api/v1/users/me"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_problem(response, 429, "RATE_LIMITED").await;
}
