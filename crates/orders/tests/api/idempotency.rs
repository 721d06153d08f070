//! `Idempotency-Key`: a repeat replays the stored response, a reused key with another body is refused, and
//! keys belong to the caller who used them.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, User, ids, order_body, spawn_app};

async fn create_with_key(
    app: &TestApp,
    user: &User,
    key: &str,
    body: &serde_json::Value,
) -> crate::helpers::Reply {
    let request = app
        .request(Method::POST, "/api/v1/orders", Some(user))
        .header("idempotency-key", key)
        .json(body);
    app.send(request).await
}

async fn own_orders(app: &TestApp, user: &User) -> Vec<uuid::Uuid> {
    let reply = app.get("/api/v1/orders", Some(user)).await;
    ids(reply.expect(StatusCode::OK))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_with_the_same_key_replays_the_stored_response() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let body = order_body(&[("SKU-A", 2, 700)]);

    let first = create_with_key(&app, &customer, "order-key-1", &body).await;
    first.expect(StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);

    let second = create_with_key(&app, &customer, "order-key-1", &body).await;
    assert_eq!(second.expect(StatusCode::CREATED), &first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("etag"), Some("\"1\""));

    assert_eq!(own_orders(&app, &customer).await, [first.id()]);
    let staff = app.user(Role::Admin);
    assert_eq!(own_orders(&app, &staff).await, [first.id()]);
    // One order, one order.created.
    assert_eq!(
        app.outbox(messaging::EventType::OrderCreated, first.id())
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_a_different_body_is_refused() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);

    let first = create_with_key(&app, &customer, "k", &order_body(&[("SKU-A", 2, 700)])).await;
    first.expect(StatusCode::CREATED);
    let second = create_with_key(&app, &customer, "k", &order_body(&[("SKU-A", 3, 700)])).await;
    second.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");

    assert_eq!(own_orders(&app, &customer).await, [first.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let alice = app.user(Role::Customer);
    let bob = app.user(Role::Customer);
    let body = order_body(&[("SKU-A", 1, 100)]);

    let hers = create_with_key(&app, &alice, "shared-key", &body).await;
    hers.expect(StatusCode::CREATED);
    let his = create_with_key(&app, &bob, "shared-key", &body).await;
    assert_eq!(
        his.expect(StatusCode::CREATED)["customer_id"],
        bob.id.to_string()
    );
    assert_eq!(his.header("idempotent-replayed"), None);
    assert_ne!(his.id(), hers.id());

    assert_eq!(own_orders(&app, &alice).await, [hers.id()]);
    assert_eq!(own_orders(&app, &bob).await, [his.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_cancel_returns_the_stored_200_instead_of_a_409() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let order = app.order_for(&customer, &[("SKU-A", 1, 100)]).await;
    let path = format!(
        "/api/v1/orders/{}/cancel",
        order["id"].as_str().unwrap_or_default()
    );
    let cancel = |key: Option<&str>| {
        let mut request = app
            .request(Method::POST, &path, Some(&customer))
            .json(&json!({"reason": "changed my mind"}));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        app.send(request)
    };

    let first = cancel(Some("cancel-1")).await;
    assert_eq!(first.expect(StatusCode::OK)["status"], "cancelled");
    assert_eq!(first.header("etag"), Some("\"2\""));

    let replay = cancel(Some("cancel-1")).await;
    assert_eq!(replay.expect(StatusCode::OK), &first.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let fresh = cancel(None).await;
    fresh.expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");

    // Cancelled once: one order.cancelled, one timeline entry for it.
    let id = crate::helpers::id_of(&order);
    assert_eq!(
        app.outbox(messaging::EventType::OrderCancelled, id)
            .await
            .len(),
        1
    );
    let cancellations = app
        .timeline(id)
        .await
        .into_iter()
        .filter(|e| e["to_status"] == "cancelled")
        .count();
    assert_eq!(cancellations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_with_one_key_make_one_order() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let body = order_body(&[("SKU-A", 1, 100)]);

    let (first, second) = tokio::join!(
        create_with_key(&app, &customer, "race", &body),
        create_with_key(&app, &customer, "race", &body),
    );

    for reply in [&first, &second] {
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT,
            "{}",
            reply.body
        );
    }
    let created: Vec<_> = [&first, &second]
        .into_iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| r.id())
        .collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|id| *id == created[0]));
    assert_eq!(own_orders(&app, &customer).await, [created[0]]);
}
