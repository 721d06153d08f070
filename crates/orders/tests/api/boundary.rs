//! The input boundary: text PostgreSQL cannot store, numbers and dates beyond what it holds, absurd lengths
//! and malformed ids are client errors — problem+json naming the field — on every route, never a 500.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Reply, address, id_of, order_body, spawn_app};

#[track_caller]
fn assert_names_field(reply: &Reply, field: &str, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {}",
        reply.body
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(
        reply.body["code"], "VALIDATION_FAILED",
        "{what}: {}",
        reply.body
    );
    assert_eq!(
        reply.body["errors"][0]["field"], field,
        "{what}: {}",
        reply.body
    );
    assert!(
        reply.body["request_id"].is_string(),
        "{what}: {}",
        reply.body
    );
}

#[tokio::test]
async fn the_public_tracking_page_refuses_nul_and_invalid_utf8_naming_the_parameter() {
    let app = spawn_app().await;
    for path in ["/api/v1/track/A%00B", "/api/v1/track/%FF%FE"] {
        let reply = app.get(path, None).await;
        assert_names_field(&reply, "tracking_number", path);
    }
}

#[tokio::test]
async fn nul_in_queries_and_bodies_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.user(Role::Admin);
    for (path, field) in [
        ("/api/v1/orders?status=A%00B", "status"),
        ("/api/v1/orders?cursor=%00", "cursor"),
        ("/api/v1/shipments?status=%00", "status"),
    ] {
        assert_names_field(&app.get(path, Some(&admin)).await, field, path);
    }
    let customer = app.user(Role::Customer);
    let mut body = order_body(&[("SKU-\u{0}", 1, 100)]);
    let reply = app.post("/api/v1/orders", Some(&customer), &body).await;
    assert_names_field(&reply, "lines[0].sku", "a NUL in a line's sku");
    body = order_body(&[("SKU-A", 1, 100)]);
    body["shipping_address"]["city"] = json!("Amster\u{0}dam");
    let reply = app.post("/api/v1/orders", Some(&customer), &body).await;
    assert_names_field(&reply, "shipping_address.city", "a NUL in the address");
}

#[tokio::test]
async fn a_malformed_id_in_any_path_is_a_422_naming_the_parameter() {
    let app = spawn_app().await;
    let admin = app.user(Role::Admin);
    // Only a driver may call the proof route at all; any other role is 403 before the path is read.
    let driver = app.user(Role::Driver);
    for (method, path) in [
        (Method::GET, "/api/v1/orders/not-a-uuid"),
        (Method::POST, "/api/v1/orders/not-a-uuid/cancel"),
        (Method::GET, "/api/v1/orders/not-a-uuid/events"),
        (Method::POST, "/api/v1/orders/not-a-uuid/shipments"),
        (Method::GET, "/api/v1/shipments/not-a-uuid"),
        (Method::POST, "/api/v1/shipments/not-a-uuid/assign"),
        (Method::GET, "/api/v1/shipments/not-a-uuid/tracking-events"),
        (Method::POST, "/api/v1/shipments/not-a-uuid/tracking-events"),
        (Method::POST, "/api/v1/shipments/12345/proof"),
        (Method::POST, "/api/v1/shipments/%00/cancel"),
    ] {
        let caller = if path.ends_with("/proof") {
            &driver
        } else {
            &admin
        };
        let mut request = app.request(method.clone(), path, Some(caller));
        if method == Method::POST {
            request = request.json(&json!({}));
        }
        assert_names_field(&app.send(request).await, "id", path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_on_every_route_are_client_errors() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let admin = app.user(Role::Admin);
    let warehouse = Uuid::now_v7();
    let order = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment = id_of(
        &app.assigned_shipment(&staff, &driver, order, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let long = "x".repeat(20_000);
    let huge = json!(i64::MAX);
    let mut long_address = address();
    long_address["street"] = json!(long);
    let shipment_path = format!("/api/v1/shipments/{shipment}/tracking-events");
    let cases: Vec<(&crate::helpers::User, Method, String, Option<Value>)> = vec![
        (
            &admin,
            Method::GET,
            format!("/api/v1/track/{}", "Z".repeat(4_000)),
            None,
        ),
        (
            &admin,
            Method::GET,
            "/api/v1/orders?created_after=-5000-01-01T00:00:00Z".into(),
            None,
        ),
        (
            &admin,
            Method::GET,
            "/api/v1/orders?created_before=%2B275760-09-13T00:00:00Z".into(),
            None,
        ),
        (
            &admin,
            Method::GET,
            "/api/v1/orders?limit=99999999999&customer_id=%FF".into(),
            None,
        ),
        (
            &admin,
            Method::GET,
            format!("/api/v1/orders?status={}", "a,".repeat(2_000)),
            None,
        ),
        (
            &customer,
            Method::POST,
            "/api/v1/orders".into(),
            Some(order_body(&[(&long, 1, 100)])),
        ),
        (
            &customer,
            Method::POST,
            "/api/v1/orders".into(),
            Some(order_body(&[("SKU-A", i64::MAX, i64::MAX)])),
        ),
        (
            &customer,
            Method::POST,
            "/api/v1/orders".into(),
            Some(
                json!({"lines": [{"sku": "SKU-A", "quantity": 1}], "currency": long, "shipping_address": long_address}),
            ),
        ),
        (
            &customer,
            Method::POST,
            format!("/api/v1/orders/{order}/cancel"),
            Some(json!({"reason": long})),
        ),
        (
            &driver,
            Method::POST,
            shipment_path.clone(),
            Some(
                json!({"status": "picked_up", "description": long, "location": {"lat": huge, "lng": -1e308}}),
            ),
        ),
        (
            &driver,
            Method::POST,
            shipment_path.clone(),
            Some(json!({"status": "in_transit", "occurred_at": "-5000-01-01T00:00:00Z"})),
        ),
        (
            &driver,
            Method::POST,
            shipment_path,
            Some(json!({"status": "in_transit", "occurred_at": "+275760-09-13T00:00:00Z"})),
        ),
        (
            &staff,
            Method::POST,
            format!("/api/v1/orders/{order}/shipments"),
            Some(json!({"warehouse_id": warehouse, "lines": [{"sku": long, "quantity": huge}]})),
        ),
    ];
    for (user, method, path, body) in cases {
        let mut request = app.request(method.clone(), &path, Some(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = app.send(request).await;
        let shown = &path[..path.len().min(80)];
        assert!(
            reply.status.is_client_error() || reply.status.is_success(),
            "{method} {shown}: {} {}",
            reply.status,
            reply.body
        );
    }
}
