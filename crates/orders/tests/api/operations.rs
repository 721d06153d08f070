//! `/health`, `/readyz`, `/metrics`, the request id and the shape of errors.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ok, order_body, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    app.order_for(&customer, &[("SKU-A", 1, 100)]).await;

    let reply = app.get("/health", None).await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "ok");

    let reply = app.get("/readyz", None).await;
    let body = reply.expect(StatusCode::OK);
    assert!(body.is_object(), "{body}");

    let response = ok(app.client.get(app.server.url("/metrics")).send().await);
    assert_eq!(response.status(), StatusCode::OK);
    let text = ok(response.text().await);
    assert!(text.contains("messaging_"), "{text}");
    assert!(text.contains("http_"), "{text}");
    assert!(text.contains("orders.order_insert"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_that_correlates_its_events() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);

    let request = app
        .request(reqwest::Method::GET, "/api/v1/orders", Some(&customer))
        .header("x-request-id", "req-orders-42");
    let reply = app.send(request).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.header("x-request-id"), Some("req-orders-42"));

    // A UUID request id becomes the correlation id of the events the request records.
    let request_id = uuid::Uuid::now_v7();
    let request = app
        .request(reqwest::Method::POST, "/api/v1/orders", Some(&customer))
        .header("x-request-id", request_id.to_string())
        .json(&order_body(&[("SKU-A", 1, 100)]));
    let reply = app.send(request).await;
    reply.expect(StatusCode::CREATED);
    let expected = request_id.to_string();
    assert_eq!(reply.header("x-request-id"), Some(expected.as_str()));
    let created = app
        .outbox(messaging::EventType::OrderCreated, reply.id())
        .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].correlation_id, request_id);

    // Errors are problem+json with a request id of their own when the caller sent none.
    for reply in [
        app.post("/api/v1/orders", Some(&customer), &json!({}))
            .await,
        app.get("/api/v1/orders/nope", Some(&customer)).await,
        app.get("/api/v1/orders", None).await,
    ] {
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{}",
            reply.body
        );
        for field in ["type", "title", "detail", "code", "request_id"] {
            assert!(reply.body[field].is_string(), "{field}: {}", reply.body);
        }
        assert_eq!(
            reply.header("x-request-id"),
            reply.body["request_id"].as_str()
        );
    }
}
