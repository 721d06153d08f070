use std::convert::Infallible;

use axum::body::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::auth::Role;
use testkit::assert_problem;

use crate::helpers::Stack;

const LIMIT: usize = 64 * 1024;

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_413_before_the_upstream_is_contacted() {
    let stack = Stack::spawn_with(|c| c.max_body_bytes = LIMIT).await;
    let response = testkit::client()
        .post(stack.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body(vec![b' '; LIMIT + 1])
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(stack.upstream.hits(), 0);
}

#[tokio::test]
async fn a_body_at_the_limit_is_forwarded() {
    let stack = Stack::spawn_with(|c| c.max_body_bytes = LIMIT).await;
    let response = testkit::client()
        .post(stack.url("/api/v1/users/me/upload"))
        .header("authorization", stack.bearer(Role::Customer))
        .body(vec![b'x'; LIMIT])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(testkit::json(response).await["received_bytes"], LIMIT);
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_with_a_413_once_it_passes_the_limit() {
    let stack = Stack::spawn_with(|c| c.max_body_bytes = LIMIT).await;
    // No content-length: the size is only known by counting while streaming.
    let chunks = futures::stream::iter(0..8)
        .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; LIMIT / 4]))));
    let request = hyper::Request::post(stack.url("/api/v1/users/me/upload"))
        .header("authorization", stack.bearer(Role::Customer))
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "PAYLOAD_TOO_LARGE");
}
