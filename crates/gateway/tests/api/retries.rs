//! Retries: only requests safe to repeat, on another instance, within the retry budget.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::{OutlierConfig, RetryConfig};
use platform::auth::Role;
use platform::breaker::BreakerConfig;

use crate::helpers::{FakeUpstream, GatewayServer, bearer, config, spawn_gateway};

struct Pair {
    failing: FakeUpstream,
    healthy: FakeUpstream,
    gateway: GatewayServer,
    admin: String,
}

/// Two instances, the first answering 503 to everything; neither is ever ejected nor the breaker
/// opened, so only retries decide where requests end up.
async fn spawn(retry: RetryConfig) -> Pair {
    let failing = FakeUpstream::spawn().await;
    failing.probe.unavailable.store(true, Ordering::SeqCst);
    let healthy = FakeUpstream::spawn().await;
    let mut config = config(&format!("{},{}", failing.url(), healthy.url()));
    config.retry = retry;
    config.outlier = OutlierConfig {
        consecutive_failures: 1_000_000,
        ..OutlierConfig::default()
    };
    config.circuit_breaker = BreakerConfig {
        volume_threshold: 1_000_000,
        ..config.circuit_breaker
    };
    let admin = bearer(&config.auth, Role::Admin);
    let gateway = spawn_gateway(config).await;
    Pair {
        failing,
        healthy,
        gateway,
        admin,
    }
}

fn generous() -> RetryConfig {
    RetryConfig {
        budget_min_retries: 1_000,
        ..RetryConfig::default()
    }
}

impl Pair {
    fn hits(&self) -> (usize, usize) {
        (self.failing.hits(), self.healthy.hits())
    }

    async fn send(&self, method: reqwest::Method, key: Option<&str>, body: Vec<u8>) -> u16 {
        let mut request = testkit::client()
            .request(method, self.gateway.url("/api/v1/users/x/orders"))
            .header("authorization", &self.admin)
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request
            .send()
            .await
            .map_or(0, |response| response.status().as_u16())
    }
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_never_repeated() {
    let pair = spawn(generous()).await;
    let mut unavailable = 0;
    for _ in 0..10 {
        match pair.send(reqwest::Method::POST, None, b"{}".to_vec()).await {
            503 => unavailable += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    let (failing, healthy) = pair.hits();
    assert_eq!(failing + healthy, 10, "a POST reached an upstream twice");
    assert_eq!(failing, unavailable);
    assert!(failing > 0, "no POST went to the failing instance");
}

#[tokio::test]
async fn gets_and_keyed_posts_are_retried_on_the_other_instance() {
    let pair = spawn(generous()).await;
    for i in 0..10 {
        let key = format!("order-{i}");
        assert_eq!(pair.send(reqwest::Method::GET, None, Vec::new()).await, 200);
        let post = pair.send(reqwest::Method::POST, Some(&key), b"{}".to_vec());
        assert_eq!(post.await, 200);
    }
    let (failing, healthy) = pair.hits();
    assert_eq!(healthy, 20);
    assert!(failing > 0, "no request tried the failing instance first");
}

#[tokio::test]
async fn a_body_too_large_to_buffer_is_streamed_once_and_never_retried() {
    let pair = spawn(RetryConfig {
        max_buffered_body_bytes: 1024,
        ..generous()
    })
    .await;
    for i in 0..6 {
        let key = format!("upload-{i}");
        let status = pair
            .send(reqwest::Method::PUT, Some(&key), vec![b'x'; 4096])
            .await;
        // The failing instance answers 503 without reading the body and closes: when its reset reaches
        // the gateway before its answer can be read, the caller gets 502 instead. Either way, once.
        assert!(
            status == 200 || status == 503 || status == 502,
            "status {status}"
        );
    }
    let (failing, healthy) = pair.hits();
    assert_eq!(failing + healthy, 6);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_when_every_instance_fails() {
    let pair = spawn(RetryConfig {
        max_retries: 1,
        budget_ratio: 0.0,
        budget_min_retries: 3,
        budget_window: Duration::from_secs(60),
        ..RetryConfig::default()
    })
    .await;
    pair.healthy.probe.unavailable.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(pair.send(reqwest::Method::GET, None, Vec::new()).await, 503);
    }
    let (failing, healthy) = pair.hits();
    assert_eq!(failing + healthy, 13, "10 requests and 3 budgeted retries");
}

#[tokio::test]
async fn with_max_attempts_set_to_one_in_the_settings_nothing_is_retried() {
    let failing = FakeUpstream::spawn().await;
    failing.probe.unavailable.store(true, Ordering::SeqCst);
    let healthy = FakeUpstream::spawn().await;
    let urls = format!("{},{}", failing.url(), healthy.url());
    let others = healthy.url();
    let settings = testkit::settings(&[
        ("USER_SERVICE_URL", urls.as_str()),
        ("INVENTORY_SERVICE_URL", others.as_str()),
        ("ORDER_SERVICE_URL", others.as_str()),
        ("LOGICORE_GATEWAY__RETRY__MAX_ATTEMPTS", "1"),
        ("LOGICORE_GATEWAY__RETRY__BUDGET_MIN_RETRIES", "1000"),
        ("LOGICORE_GATEWAY__OUTLIER__CONSECUTIVE_FAILURES", "1000000"),
        (
            "LOGICORE_GATEWAY__CIRCUIT_BREAKER__VOLUME_THRESHOLD",
            "1000000",
        ),
        ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000"),
    ]);
    let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.retry.max_retries, 0);
    let admin = bearer(&config.auth, Role::Admin);
    let gateway = spawn_gateway(config).await;
    let mut unavailable = 0;
    for _ in 0..10 {
        let status = testkit::client()
            .get(gateway.url("/api/v1/users/x/orders"))
            .header("authorization", &admin)
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        match status {
            503 => unavailable += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(failing.hits() + healthy.hits(), 10, "a GET was sent twice");
    assert_eq!(
        failing.hits(),
        unavailable,
        "every failed attempt was answered as is"
    );
    assert!(unavailable > 0, "no GET went to the failing instance");
}
