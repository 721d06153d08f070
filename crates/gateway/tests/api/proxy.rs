use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::auth::Role;
use testkit::assert_problem;

use crate::helpers::{Stack, closed_port_url, echoed};

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_path_and_query_reach_the_upstream_unchanged() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me/preferences?theme=dark&tags=a,b&q=%20x"))
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    let echo = echoed(response).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/v1/users/me/preferences");
    assert_eq!(echo["query"], "theme=dark&tags=a,b&q=%20x");
}

#[tokio::test]
async fn a_request_body_and_method_reach_the_upstream() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .post(stack.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"a@b.c","password":"pw"}"#)
        .send()
        .await
        .unwrap();
    let echo = echoed(response).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], r#"{"email":"a@b.c","password":"pw"}"#);
    assert_eq!(echo["headers"]["content-type"], "application/json");
}

/// The hop-by-hop headers a caller sends, plus one end-to-end header that must survive.
fn with_hop_headers(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("connection", "x-client-hop")
        .header("x-client-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
}

const CLIENT_HOP: [&str; 4] = ["x-client-hop", "keep-alive", "proxy-authorization", "te"];
const UPSTREAM_HOP: [&str; 4] = ["x-upstream-hop", "keep-alive", "server", "x-powered-by"];

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_in_both_directions() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Customer);

    // Control: without the gateway in between, every one of them gets through.
    let direct =
        with_hop_headers(testkit::client().get(stack.upstream.server.url("/api/v1/users/me")))
            .send()
            .await
            .unwrap();
    for name in UPSTREAM_HOP {
        assert!(
            direct.headers().contains_key(name),
            "control: {name} not sent"
        );
    }
    let echo = echoed(direct).await;
    for name in CLIENT_HOP {
        assert!(
            echo["headers"].get(name).is_some(),
            "control: {name} not sent: {echo}"
        );
    }

    let response = with_hop_headers(testkit::client().get(stack.url("/api/v1/users/me")))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    for name in UPSTREAM_HOP {
        assert!(
            !response.headers().contains_key(name),
            "{name} reached the caller: {:?}",
            response.headers()
        );
    }
    let echo = echoed(response).await;
    let received = echo["headers"].as_object().unwrap();
    for name in CLIENT_HOP {
        assert!(
            !received.contains_key(name),
            "{name} reached the upstream: {echo}"
        );
    }
    assert_eq!(received["x-end-to-end"], "kept");
    assert!(
        received.contains_key("authorization"),
        "services check the token again"
    );
}

#[tokio::test]
async fn forwarding_headers_and_the_request_id_reach_the_upstream_and_come_back() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me"))
        .header("authorization", stack.bearer(Role::Customer))
        .header("x-request-id", "trace-me-123")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let echo = echoed(response).await;
    let headers = &echo["headers"];
    assert_eq!(headers["x-request-id"], "trace-me-123");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        stack.gateway.address().to_string()
    );
    assert_eq!(
        headers["host"],
        stack.upstream.server.address.to_string(),
        "the upstream is addressed by its own name"
    );
}

#[tokio::test]
async fn a_request_without_an_id_gets_one_that_the_upstream_sees_too() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me"))
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let echo = echoed(response).await;
    assert_eq!(echo["headers"]["x-request-id"], id.as_str());
}

#[tokio::test]
async fn a_response_streams_to_the_caller_before_the_upstream_has_finished_it() {
    let stack = Stack::spawn().await;
    let mut response = testkit::client()
        .get(stack.url("/api/v1/users/me/stream"))
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The upstream holds its second chunk back until released, so a buffering proxy would never
    // deliver the first one.
    let first = tokio::time::timeout(WITHIN, response.chunk())
        .await
        .expect("the first chunk arrived while the upstream was still sending")
        .unwrap()
        .unwrap();
    assert_eq!(first, "first chunk\n");
    stack.upstream.probe.release_stream.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second chunk\n");
}

#[tokio::test]
async fn a_request_body_streams_to_the_upstream_before_the_caller_has_finished_it() {
    let stack = Stack::spawn_with(|c| c.max_body_bytes = 64 * 1024 * 1024).await;
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Bytes>();
    let body = StreamBody::new(receiver.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
    let request = hyper::Request::post(stack.url("/api/v1/users/me/upload"))
        .header("authorization", stack.bearer(Role::Customer))
        .body(body)
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let pending = tokio::spawn(client.request(request));

    let chunk = Bytes::from(vec![b'x'; 1024 * 1024]);
    sender.unbounded_send(chunk.clone()).unwrap();
    // The rest is sent only once the upstream holds the first megabyte: a buffering proxy would
    // wait for the whole body and this would time out.
    tokio::time::timeout(WITHIN, stack.upstream.probe.first_chunk_received.notified())
        .await
        .expect("the upstream received the start of the body before the caller finished it");
    for _ in 0..7 {
        sender.unbounded_send(chunk.clone()).unwrap();
    }
    drop(sender);

    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["received_bytes"], 8 * 1024 * 1024);
}

#[tokio::test]
async fn a_large_body_makes_the_round_trip_intact() {
    let stack = Stack::spawn_with(|c| c.max_body_bytes = 64 * 1024 * 1024).await;
    let payload: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let response = testkit::client()
        .post(stack.url("/api/v1/users/me/mirror"))
        .header("authorization", stack.bearer(Role::Customer))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let returned = response.bytes().await.unwrap();
    assert_eq!(returned.len(), payload.len());
    assert!(returned == payload, "the mirrored body differs");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_with_retry_after() {
    let down = closed_port_url().await;
    let stack = Stack::spawn_with(|c| {
        c.upstreams[0] = gateway::Upstream::new("users", &down).unwrap();
    })
    .await;
    let response = testkit::client()
        .post(stack.url("/api/v1/auth/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let body = assert_problem(response, 503, "UPSTREAM_UNAVAILABLE").await;
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused"),
        "the body reveals internals: {text}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let stack = Stack::spawn_with(|c| c.request_timeout = deadline).await;
    let started = Instant::now();
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me/slow"))
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_problem(response, 504, "UPSTREAM_TIMEOUT").await;
    assert!(
        elapsed >= deadline,
        "answered before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < deadline * 10,
        "answered long after the deadline: {elapsed:?}"
    );
}

#[tokio::test]
async fn an_unknown_api_path_is_a_404_problem_that_never_reaches_an_upstream() {
    let stack = Stack::spawn().await;
    for path in ["/api/v1/nothing-here", "/api/v2/users", "/api/v1/usersx"] {
        let response = testkit::client()
            .get(stack.url(path))
            .header("authorization", stack.bearer(Role::Admin))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "NOT_FOUND").await;
    }
    assert_eq!(stack.upstream.hits(), 0);
}
