//! The direct path at the byte level: what a client sees on one connection (pipelining, `HEAD`,
//! `Connection: close`, a connection that moves to the router and back), upstreams that frame their
//! responses in each way HTTP/1.1 allows or close their keep-alive connections, and the one pool of
//! upstream connections both paths send on.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;

use gateway::Config;
use platform::auth::Role;
use tokio::net::TcpStream;

use crate::helpers::{GatewayServer, RawUpstream, Stack, WITHIN, Wire, config, spawn_gateway};

fn get(path: &str, bearer: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\n\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Admin);
    let mut wire = Wire::connect(stack.gateway.address()).await;
    let body = r#"{"n":2}"#;
    wire.send(&format!(
        "{}POST /api/v1/orders HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\ncontent-length: {}\r\n\r\n{body}{}",
        get("/api/v1/users/1", &bearer),
        body.len(),
        get("/api/v1/users/3", &bearer),
    ))
    .await;
    let first = wire.answer("GET").await;
    let second = wire.answer("POST").await;
    let third = wire.answer("GET").await;
    assert_eq!(first.json()["path"], "/api/v1/users/1");
    assert_eq!(second.json()["path"], "/api/v1/orders");
    assert_eq!(second.json()["body"], body);
    assert_eq!(third.json()["path"], "/api/v1/users/3");
    for answer in [&first, &second, &third] {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert!(answer.header("date").is_some());
        assert!(answer.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn a_connection_moves_to_the_router_for_other_routes_and_keeps_serving() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Admin);
    let mut wire = Wire::connect(stack.gateway.address()).await;
    wire.send(&get("/api/v1/users/1", &bearer)).await;
    assert_eq!(wire.answer("GET").await.json()["path"], "/api/v1/users/1");
    wire.send("GET /health HTTP/1.1\r\nhost: gw\r\n\r\n").await;
    let health = wire.answer("GET").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    wire.send(&get("/api/v1/users/2", &bearer)).await;
    let again = wire.answer("GET").await;
    assert_eq!(again.json()["path"], "/api/v1/users/2");
    assert_eq!(again.header("x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn head_gets_the_length_without_a_body_and_close_is_honoured() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Admin);
    let mut wire = Wire::connect(stack.gateway.address()).await;
    wire.send(&format!(
        "HEAD /api/v1/users/1 HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\n\r\n"
    ))
    .await;
    let head = wire.answer("HEAD").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    wire.send(&format!(
        "GET /api/v1/users/1 HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let get = wire.answer("GET").await;
    assert_eq!(get.status, 200);
    assert_eq!(get.header("connection"), Some("close"));
    assert!(wire.closed().await);
}

#[tokio::test]
async fn refusals_on_the_direct_path_are_problems_with_the_edge_headers() {
    let stack = Stack::spawn().await;
    let mut wire = Wire::connect(stack.gateway.address()).await;
    wire.send(&get("/api/v1/users/1", "Bearer not-a-token"))
        .await;
    let refused = wire.answer("GET").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    let id = refused
        .header("x-request-id")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(refused.json()["request_id"], id);
    assert_eq!(stack.upstream.hits(), 0);
}

async fn gateway_for(upstream: &RawUpstream) -> (GatewayServer, String) {
    gateway_with(upstream, |_| {}).await
}

async fn gateway_with(
    upstream: &RawUpstream,
    adjust: impl FnOnce(&mut Config),
) -> (GatewayServer, String) {
    let mut config = config(&upstream.url);
    adjust(&mut config);
    // The raw upstream answers one canned response on connections these tests count: it cannot be the
    // users service the gateway polls for revocations, so the gateway gets a set nobody feeds.
    config.revocation = config
        .revocation
        .fed_by_users_service(&platform::revocation::Revocations::new());
    let bearer = crate::helpers::bearer(&config.auth, Role::Admin);
    (spawn_gateway(config).await, bearer)
}

#[tokio::test]
async fn a_chunked_response_passes_through_and_its_upstream_connection_is_reused() {
    let upstream = RawUpstream::spawn(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kind: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: yes\r\n\r\n",
        false,
    )
    .await;
    let (gateway, bearer) = gateway_for(&upstream).await;
    let mut wire = Wire::connect(gateway.address()).await;
    for _ in 0..3 {
        wire.send(&get("/api/v1/users/1", &bearer)).await;
        let answer = wire.answer("GET").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-kind"), Some("chunked"));
        assert_eq!(answer.body, b"hello, world");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_router_path_and_the_direct_path_send_on_the_same_upstream_connections() {
    let upstream =
        RawUpstream::spawn("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    // One worker serves both client connections, so both take from the same idle list.
    let (gateway, bearer) =
        gateway_with(&upstream, |config| config.http_workers = NonZeroUsize::MIN).await;
    // A chunked upload to the same upstream (users) as the GET: the direct path hands its connection
    // to the router path.
    let upload = format!(
        "PUT /api/v1/users/1 HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\n\
         transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let mut routed = Wire::connect(gateway.address()).await;
    let mut direct = Wire::connect(gateway.address()).await;
    for round in 0..2 {
        routed.send(&upload).await;
        let answer = routed.answer("PUT").await;
        assert_eq!(
            (answer.status, &answer.body[..]),
            (200, &b"ok"[..]),
            "round {round}"
        );
        direct.send(&get("/api/v1/users/1", &bearer)).await;
        let answer = direct.answer("GET").await;
        assert_eq!(
            (answer.status, &answer.body[..]),
            (200, &b"ok"[..]),
            "round {round}"
        );
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_response_ending_with_the_connection_is_rechunked_for_the_client() {
    let upstream =
        RawUpstream::spawn("HTTP/1.1 200 OK\r\nx-kind: eof\r\n\r\nuntil the end", true).await;
    let (gateway, bearer) = gateway_for(&upstream).await;
    let mut wire = Wire::connect(gateway.address()).await;
    for _ in 0..2 {
        wire.send(&get("/api/v1/users/1", &bearer)).await;
        let answer = wire.answer("GET").await;
        assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
        assert_eq!(answer.body, b"until the end");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_never_used_even_for_a_post() {
    // Each answer is framed and keep-alive as far as the head says, but the upstream then closes, as a
    // server does when its idle timeout fires. A POST without an Idempotency-Key is never retried, so
    // it only succeeds if the gateway does not send it on the dead connection.
    let upstream =
        RawUpstream::spawn("HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", true).await;
    let (gateway, bearer) = gateway_for(&upstream).await;
    let mut wire = Wire::connect(gateway.address()).await;
    for round in 0..5 {
        wire.send(&format!(
            "POST /api/v1/orders HTTP/1.1\r\nhost: gw\r\nauthorization: {bearer}\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let answer = wire.answer("POST").await;
        assert_eq!(answer.status, 201, "round {round}: {answer:?}");
        // The upstream has closed its side (the FIN is on the gateway's socket) before the next request.
        testkit::eventually("the upstream to close", WITHIN, || async {
            (upstream.closed.load(Ordering::SeqCst) > round).then_some(())
        })
        .await;
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_malformed_upstream_response_is_a_502_problem() {
    let upstream = RawUpstream::spawn("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", true).await;
    let (gateway, bearer) = gateway_for(&upstream).await;
    let mut wire = Wire::connect(gateway.address()).await;
    wire.send(&get("/api/v1/users/1", &bearer)).await;
    let answer = wire.answer("GET").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["code"], "UPSTREAM_ERROR");
}

#[tokio::test]
async fn shutdown_lets_a_proxied_request_in_flight_finish_then_stops() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Admin);
    let Stack {
        upstream, gateway, ..
    } = stack;
    let url = gateway.url("/api/v1/users/hold");
    let pending = tokio::spawn(async move {
        testkit::client()
            .get(url)
            .header("authorization", bearer)
            .send()
            .await
    });
    testkit::eventually("the request to reach the upstream", WITHIN, || async {
        (upstream.hits() == 1).then_some(())
    })
    .await;
    let address = gateway.address();
    let stopping = tokio::spawn(gateway.stop());
    // Stopping waits for the request in flight; releasing the upstream lets it finish.
    testkit::eventually("the gateway to stop accepting", WITHIN, || async {
        TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    upstream.probe.release_hold.notify_one();
    let response = tokio::time::timeout(WITHIN, pending)
        .await
        .unwrap_or_else(|_| panic!("no answer within {WITHIN:?}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap_or_default(), "released");
    tokio::time::timeout(WITHIN, stopping)
        .await
        .unwrap_or_else(|_| panic!("the gateway did not stop within {WITHIN:?}"))
        .unwrap_or_else(|e| panic!("{e}"));
}
