//! The input boundary: text PostgreSQL cannot store, numbers and dates beyond what it holds, absurd lengths
//! and malformed ids are client errors — problem+json naming the field — on every route, never a 500.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn assert_names_field(status: StatusCode, body: &Value, field: &str, what: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
    assert_eq!(body["code"], "VALIDATION_FAILED", "{what}: {body}");
    assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
    assert!(body["request_id"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn a_nul_in_any_query_or_path_parameter_is_a_422_naming_it() {
    let app = spawn_app().await;
    for (path, field) in [
        ("/api/v1/inventory/products?q=A%00B", "q"),
        ("/api/v1/inventory/products?sku=A%00B", "sku"),
        ("/api/v1/inventory/stock-levels?sku=A%00B", "sku"),
        ("/api/v1/inventory/movements?sku=A%00B", "sku"),
        ("/api/v1/inventory/movements?reason=A%00B", "reason"),
        ("/api/v1/inventory/warehouses?code=A%00B", "code"),
        ("/api/v1/inventory/products/A%00B", "id"),
    ] {
        let (status, body) = app.get(path, Role::Admin).await;
        assert_names_field(status, &body, field, path);
    }
}

#[tokio::test]
async fn a_nul_in_a_json_body_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("W1", 1).await;
    app.product("SKU-1", json!({})).await;
    for (path, body, field) in [
        (
            "/api/v1/inventory/products",
            json!({"sku": "SKU-2", "name": "Bolt\u{0}"}),
            "name",
        ),
        (
            "/api/v1/inventory/warehouses",
            json!({"code": "W2", "name": "North", "address": "1 Dock\u{0} Road"}),
            "address",
        ),
        (
            "/api/v1/inventory/adjustments",
            json!({"sku": "SKU-1", "warehouse_id": warehouse, "delta": 1, "reason": "receipt", "note": "\u{0}"}),
            "note",
        ),
    ] {
        let (status, reply) = app.post(path, Role::Admin, body).await;
        assert_names_field(status, &reply, field, path);
    }
}

#[tokio::test]
async fn a_malformed_id_in_any_path_is_a_422_naming_the_parameter() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/api/v1/inventory/products/not-a-uuid"),
        (Method::PATCH, "/api/v1/inventory/products/not-a-uuid"),
        (
            Method::GET,
            "/api/v1/inventory/products/not-a-uuid/availability",
        ),
        (Method::GET, "/api/v1/inventory/reservations/not-a-uuid"),
        (
            Method::POST,
            "/api/v1/inventory/reservations/not-a-uuid/release",
        ),
        (Method::GET, "/api/v1/inventory/warehouses/%FF%FE"),
    ] {
        let body = (method != Method::GET).then(|| json!({}));
        let (status, reply) = app.call(method, path, Some(Role::Admin), body).await;
        assert_names_field(status, &reply, "id", path);
    }
}

#[tokio::test]
async fn hostile_values_on_every_route_are_client_errors() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("W1", 1).await;
    let product = app.product("SKU-1", json!({})).await;
    let long = "x".repeat(20_000);
    let huge = json!(i64::MAX);
    let query_long = "y".repeat(4_000);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("/api/v1/inventory/products?q={query_long}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/inventory/products?sku={query_long}"),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/products?limit=99999999999".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/products?cursor=%FF%00".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/movements?since=-5000-01-01T00:00:00Z".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/movements?until=%2B275760-09-13T00:00:00Z".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/movements?since=0000-01-01T00:00:00Z".into(),
            None,
        ),
        (
            Method::GET,
            "/api/v1/inventory/stock-levels?warehouse_id=%00".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/inventory/products".into(),
            Some(json!({"sku": long, "name": "n"})),
        ),
        (
            Method::POST,
            "/api/v1/inventory/products".into(),
            Some(json!({"sku": "SKU-9", "name": long})),
        ),
        (
            Method::POST,
            "/api/v1/inventory/products".into(),
            Some(json!({"sku": "SKU-8", "name": "n", "weight_grams": huge, "reorder_point": huge})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/inventory/products/{product}"),
            Some(json!({"name": long, "weight_grams": huge, "reorder_point": -1})),
        ),
        (
            Method::POST,
            "/api/v1/inventory/warehouses".into(),
            Some(json!({"code": long, "name": long, "address": long, "priority": huge})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/inventory/warehouses/{warehouse}"),
            Some(json!({"name": long, "address": long, "priority": huge})),
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjustments".into(),
            Some(
                json!({"sku": "SKU-1", "warehouse_id": warehouse, "delta": huge, "reason": "receipt", "note": long}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjustments".into(),
            Some(json!({"sku": long, "warehouse_id": warehouse, "delta": 1, "reason": long})),
        ),
        (
            Method::POST,
            "/api/v1/inventory/transfers".into(),
            Some(
                json!({"sku": "SKU-1", "from_warehouse_id": warehouse, "to_warehouse_id": warehouse, "quantity": huge}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/inventory/reservations".into(),
            Some(
                json!({"order_id": product, "lines": [{"sku": long, "quantity": huge}], "ttl_seconds": huge}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/inventory/reservations".into(),
            Some(
                json!({"order_id": product, "lines": [{"sku": "SKU-1", "quantity": 1}], "ttl_seconds": -1}),
            ),
        ),
    ];
    for (method, path, body) in cases {
        let (status, reply) = app
            .call(method.clone(), &path, Some(Role::Admin), body)
            .await;
        let shown = &path[..path.len().min(80)];
        assert!(
            status.is_client_error() || status.is_success(),
            "{method} {shown}: {status} {reply}"
        );
        if status.is_client_error() {
            assert!(reply["code"].is_string(), "{method} {shown}: {reply}");
        }
    }
}
