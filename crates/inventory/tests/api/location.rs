//! Every 201 names what it created in `Location` (a stock change its ledger row); reserving again for the
//! same order names the same reservation.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, id_of, ok, spawn_app};

/// Posts `body` to `path` as a manager: status, `Location` and body.
async fn create(app: &TestApp, path: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let response = ok(app
        .client
        .request(Method::POST, app.server.url(path))
        .bearer_auth(app.token(Role::Manager))
        .json(&body)
        .send()
        .await);
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, ok(response.json().await))
}

#[tokio::test]
async fn every_create_names_what_it_created_in_location() {
    let app = spawn_app().await;
    let (status, location, warehouse) = create(
        &app,
        "/api/v1/inventory/warehouses",
        json!({"code": "LOC-1", "name": "Here", "address": "1 Main St"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{warehouse}");
    let warehouse_id = id_of(&warehouse);
    let warehouse_path = format!("/api/v1/inventory/warehouses/{warehouse_id}");
    assert_eq!(location.as_deref(), Some(warehouse_path.as_str()));
    assert_eq!(app.get(&warehouse_path, Role::Manager).await.1, warehouse);

    let (status, location, product) = create(
        &app,
        "/api/v1/inventory/products",
        json!({"sku": "LOC-SKU", "name": "Widget"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let product_path = format!("/api/v1/inventory/products/{}", id_of(&product));
    assert_eq!(location.as_deref(), Some(product_path.as_str()));
    assert_eq!(app.get(&product_path, Role::Manager).await.1, product);

    let (status, location, adjusted) = create(
        &app,
        "/api/v1/inventory/adjustments",
        json!({"sku": "LOC-SKU", "warehouse_id": warehouse_id, "delta": 5, "reason": "receipt"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{adjusted}");
    let movement_path = format!(
        "/api/v1/inventory/movements/{}",
        id_of(&adjusted["movement"])
    );
    assert_eq!(location.as_deref(), Some(movement_path.as_str()));
    assert_eq!(
        app.get(&movement_path, Role::Dispatcher).await.1,
        adjusted["movement"]
    );

    let other = app.warehouse("LOC-2", 2).await;
    let (status, location, transfer) = create(
        &app,
        "/api/v1/inventory/transfers",
        json!({"sku": "LOC-SKU", "from_warehouse_id": warehouse_id, "to_warehouse_id": other, "quantity": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{transfer}");
    let outgoing = &transfer["movements"][0];
    assert_eq!(outgoing["reason"], "transfer_out");
    let outgoing_path = format!("/api/v1/inventory/movements/{}", id_of(outgoing));
    assert_eq!(location.as_deref(), Some(outgoing_path.as_str()));
    assert_eq!(app.get(&outgoing_path, Role::Manager).await.1, *outgoing);
    // The ledger is staff's: a customer cannot read a movement, and an unknown one is 404.
    assert_eq!(
        app.get(&outgoing_path, Role::Customer).await.0,
        StatusCode::FORBIDDEN
    );
    let unknown = format!("/api/v1/inventory/movements/{}", uuid::Uuid::now_v7());
    assert_eq!(
        app.get(&unknown, Role::Manager).await.0,
        StatusCode::NOT_FOUND
    );
    let order = uuid::Uuid::now_v7();
    let body = json!({"order_id": order, "lines": [{"sku": "LOC-SKU", "quantity": 2}]});
    let (status, location, reservation) =
        create(&app, "/api/v1/inventory/reservations", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    let reservation_path = format!("/api/v1/inventory/reservations/{}", id_of(&reservation));
    assert_eq!(location.as_deref(), Some(reservation_path.as_str()));
    let (status, fetched) = app.get(&reservation_path, Role::Manager).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    // The same order again: the first reservation, at the same place.
    let (status, again, repeated) = create(&app, "/api/v1/inventory/reservations", body).await;
    assert_eq!(status, StatusCode::OK, "{repeated}");
    assert_eq!(again, location);
    assert_eq!(id_of(&repeated), id_of(&reservation));
}
