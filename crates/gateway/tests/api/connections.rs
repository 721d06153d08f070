//! Connection limits at the gateway, on both of its paths: the direct path that reads API requests
//! itself, and hyper with the router, which it hands everything else to.

use std::time::{Duration, Instant};

use platform::auth::Role;
use platform::http::ConnectionLimits;
use testkit::assert_problem;
use testkit::limits::{self, roomy};
use testkit::raw;

use crate::helpers::{LARGE_BYTES, Stack};

async fn stack(limits: ConnectionLimits) -> Stack {
    Stack::spawn_with(|c| c.connection_limits = limits).await
}

/// A proxied request (the direct path), keeping the connection open.
fn proxied(stack: &Stack, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: gw\r\nauthorization: {}\r\n\r\n",
        stack.bearer(Role::Customer)
    )
    .into_bytes()
}

#[tokio::test]
async fn half_sent_requests_are_cut_off_after_the_header_timeout_while_others_are_served() {
    const SLOW_CLIENTS: usize = 200;
    let header_timeout = Duration::from_millis(1500);
    let stack = stack(ConnectionLimits {
        header_read_timeout: header_timeout,
        ..roomy()
    })
    .await;
    let address = stack.gateway.address();

    // Half of them on a proxied route (the direct path reads them), half on one the router serves.
    let heads: Vec<Vec<u8>> = (0..SLOW_CLIENTS)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/api/v1/users/me"
            } else {
                "/health"
            };
            format!("GET {path} HTTP/1.1\r\nhost: gw\r\nx-sl").into_bytes()
        })
        .collect();
    let slow = limits::open_slow_clients(address, &heads).await;
    let client = testkit::client();
    for _ in 0..10 {
        let response = client
            .get(stack.url("/api/v1/users/me"))
            .header("authorization", stack.bearer(Role::Customer))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let health = client
            .get(stack.url("/health"))
            .send()
            .await
            .expect("request");
        assert_eq!(health.status(), 200);
    }
    limits::slow_clients_are_cut_off_with_408(slow, header_timeout).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let keep_alive = Duration::from_millis(500);
    let stack = stack(ConnectionLimits {
        keep_alive_timeout: keep_alive,
        ..roomy()
    })
    .await;
    let request = proxied(&stack, "/api/v1/users/me");
    limits::idle_connection_closes_after_keep_alive(stack.gateway.address(), &request, keep_alive)
        .await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_while_established_ones_are_served() {
    let stack = stack(ConnectionLimits {
        max_connections: 3,
        ..roomy()
    })
    .await;
    let request = proxied(&stack, "/api/v1/users/me");
    limits::connections_over_the_cap_are_closed(stack.gateway.address(), &request, 3).await;
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431_and_a_long_target_414_on_both_paths() {
    let stack = stack(roomy()).await;
    let client = testkit::client();
    for path in ["/api/v1/users/me", "/health"] {
        let too_large = client
            .get(stack.url(path))
            .header("authorization", stack.bearer(Role::Customer))
            .header("x-filler", "a".repeat(5000))
            .send()
            .await
            .expect("request");
        assert_problem(too_large, 431, "HEADERS_TOO_LARGE").await;

        let too_long = client
            .get(stack.url(&format!("{path}?q={}", "a".repeat(1100))))
            .header("authorization", stack.bearer(Role::Customer))
            .send()
            .await
            .expect("request");
        assert_problem(too_long, 414, "URI_TOO_LONG").await;
    }
    assert_eq!(
        stack.upstream.hits(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_a_large_response_is_dropped_after_the_write_timeout() {
    let write_timeout = Duration::from_millis(500);
    let stack = stack(ConnectionLimits {
        write_timeout,
        ..roomy()
    })
    .await;
    let sent = Instant::now();
    let mut stream = raw::send(
        stack.gateway.address(),
        &proxied(&stack, "/api/v1/users/me/large"),
    )
    .await;
    let dropped = testkit::eventually(
        "the gateway to give up on the unread response",
        Duration::from_secs(15),
        || async { *stack.upstream.probe.large_dropped.lock().ok()? },
    )
    .await;
    assert!(
        dropped - sent >= write_timeout,
        "dropped after {:?}",
        dropped - sent
    );
    let (received, _) = raw::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.len() < LARGE_BYTES, "the whole response arrived");
}
