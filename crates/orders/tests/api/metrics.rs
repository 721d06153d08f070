//! The business metrics on `/metrics` move by exactly what committed: orders created and the statuses they
//! reach, the confirmation latency, shipments by status, deliveries with and without proof. A refused or
//! invalid request, a replayed one and a redelivered event count nothing.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{DEADLINE, TestApp, id_of, order_body, spawn_app, spawn_app_with};

const SERVICE: &str = "service=\"orders\"";

/// The value of one series (the sum of the matching ones) on the service's `/metrics` page now.
async fn value(app: &TestApp, family: &str, label: &str) -> f64 {
    let page = testkit::metrics(&app.server.url("/metrics")).await;
    testkit::metric_sum(&page, family, label)
}

/// Waits until a series reaches `expected`: the saga consumer counts after its commit, which a reader of the
/// order can see a moment before.
async fn reaches(app: &TestApp, family: &str, label: &str, expected: f64) {
    let what = format!("{family}{{{label}}} to be {expected}");
    testkit::eventually(&what, DEADLINE, || async {
        (value(app, family, label).await == expected).then_some(())
    })
    .await;
}

fn status(to: &str) -> String {
    format!("to=\"{to}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_the_statuses_they_reach_are_counted_once_committed() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let created = "orders_created_total";
    let changes = "orders_status_changes_total";
    let latency = "orders_confirmation_duration_seconds_count";
    // Every status has its series from the start, at 0.
    for to in ["confirmed", "rejected", "cancelled", "expired"] {
        assert_eq!(value(&app, changes, &status(to)).await, 0.0, "{to}");
    }
    assert_eq!(value(&app, created, SERVICE).await, 0.0);

    // Invalid: nothing committed, nothing counted.
    let mut invalid = order_body(&[("SKU-A", 1, 100)]);
    invalid["currency"] = json!("XX");
    let reply = app.post("/api/v1/orders", Some(&customer), &invalid).await;
    reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(value(&app, created, SERVICE).await, 0.0);

    // Created once; the replay of the same key counts nothing more.
    let body = order_body(&[("SKU-A", 2, 100)]);
    let key = Uuid::now_v7().to_string();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = app
            .request(Method::POST, "/api/v1/orders", Some(&customer))
            .header("idempotency-key", &key)
            .json(&body);
        ids.push(app.send(request).await.expect(StatusCode::CREATED).clone());
    }
    assert_eq!(ids[0]["id"], ids[1]["id"]);
    assert_eq!(value(&app, created, SERVICE).await, 1.0);
    let confirmed_id = id_of(&ids[0]);

    // Confirmed by the saga, with its latency; the redelivered answer changes nothing.
    let warehouse = Uuid::now_v7();
    let answer = app.confirm(confirmed_id, &[("SKU-A", warehouse, 2)]).await;
    reaches(&app, changes, &status("confirmed"), 1.0).await;
    reaches(&app, latency, SERVICE, 1.0).await;
    app.redeliver(&answer).await;
    let rejected_id = id_of(&app.order_for(&customer, &[("SKU-B", 1, 100)]).await);
    app.reject(rejected_id, &[("SKU-B", 1, 0)]).await;
    reaches(&app, changes, &status("rejected"), 1.0).await;
    assert_eq!(value(&app, changes, &status("confirmed")).await, 1.0);
    assert_eq!(value(&app, latency, SERVICE).await, 1.0);
    assert_eq!(value(&app, created, SERVICE).await, 2.0);

    // Cancelled once; cancelling again is refused and counts nothing.
    let cancel = format!("/api/v1/orders/{confirmed_id}/cancel");
    let reason = json!({"reason": "changed my mind"});
    app.post(&cancel, Some(&customer), &reason)
        .await
        .expect(StatusCode::OK);
    app.post(&cancel, Some(&customer), &reason)
        .await
        .expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
    assert_eq!(value(&app, changes, &status("cancelled")).await, 1.0);
    assert_eq!(value(&app, changes, &status("expired")).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_sweeper_expires_is_counted_once() {
    let app = spawn_app_with(&[
        ("LOGICORE_ORDERS__PENDING_TTL_SECS", "1"),
        ("LOGICORE_ORDERS__SWEEPER_INTERVAL_MS", "100"),
    ])
    .await;
    let customer = app.user(Role::Customer);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    app.wait_for_status(id, "expired").await;
    // The sweeper counts right after its commit, which the order's reader may see first.
    reaches(&app, "orders_status_changes_total", &status("expired"), 1.0).await;
    assert_eq!(value(&app, "orders_created_total", SERVICE).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_by_status_and_deliveries_with_and_without_proof_are_counted() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let order = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1), ("SKU-B", 1)])
        .await;
    let shipments = "orders_shipment_status_changes_total";
    let deliveries = "orders_deliveries_total";

    // More than the order holds: refused, nothing counted.
    app.create_shipment(&staff, order, warehouse, &[("SKU-A", 5)], false)
        .await
        .expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");
    assert_eq!(value(&app, shipments, &status("pending")).await, 0.0);

    let without = id_of(
        &app.assigned_shipment(&staff, &driver, order, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let with = id_of(
        &app.assigned_shipment(&staff, &driver, order, warehouse, &[("SKU-B", 1)], true)
            .await,
    );
    assert_eq!(value(&app, shipments, &status("pending")).await, 2.0);
    assert_eq!(value(&app, shipments, &status("assigned")).await, 2.0);

    let road = ["picked_up", "in_transit", "out_for_delivery"];
    app.drive(without, &driver, &road).await;
    app.drive(without, &driver, &["delivered"]).await;
    app.drive(with, &driver, &road).await;
    // Delivery before the proof is refused: not a delivery.
    app.track(with, &driver, json!({"status": "delivered"}))
        .await
        .expect_problem(StatusCode::CONFLICT, "PROOF_REQUIRED");
    assert_eq!(value(&app, deliveries, "proof=\"with\"").await, 0.0);
    let proof = json!({"type": "signature", "receiver_name": "Ada", "reference": "sig/1"});
    app.post(
        &format!("/api/v1/shipments/{with}/proof"),
        Some(&driver),
        &proof,
    )
    .await
    .expect(StatusCode::CREATED);
    app.drive(with, &driver, &["delivered"]).await;

    for to in road.iter().chain(&["delivered"]) {
        assert_eq!(value(&app, shipments, &status(to)).await, 2.0, "{to}");
    }
    assert_eq!(value(&app, shipments, &status("cancelled")).await, 0.0);
    assert_eq!(value(&app, deliveries, "proof=\"with\"").await, 1.0);
    assert_eq!(value(&app, deliveries, "proof=\"without\"").await, 1.0);
    // The order followed its shipments.
    reaches(
        &app,
        "orders_status_changes_total",
        &status("delivered"),
        1.0,
    )
    .await;
}
