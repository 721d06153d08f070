//! The `inventory.*` events of changes made over HTTP: recorded in the outbox in the change's own
//! transaction, so a refused change records nothing.

use messaging::{Envelope, EventType};
use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, id_of, ok, spawn_app};

async fn published(app: &TestApp, event_type: EventType) -> Vec<Envelope> {
    let bodies: Vec<String> = ok(sqlx::query_scalar(
        "SELECT envelope::text FROM outbox WHERE event_type = $1 ORDER BY position",
    )
    .bind(event_type.as_str())
    .fetch_all(app.db.pool())
    .await);
    bodies
        .iter()
        .map(|body| ok(Envelope::from_json(body.as_bytes())))
        .collect()
}

async fn adjust(app: &TestApp, sku: &str, warehouse: Uuid, delta: i64) -> StatusCode {
    let (status, _) = app
        .post(
            "/api/v1/inventory/adjustments",
            Role::Manager,
            json!({"sku": sku, "warehouse_id": warehouse, "delta": delta, "reason": "damage"}),
        )
        .await;
    status
}

#[tokio::test]
async fn an_adjustment_records_inventory_adjusted_and_a_refused_one_records_nothing() {
    let app = spawn_app().await;
    let hub = app.warehouse("HUB", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", hub, 10).await;
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    assert_eq!(adjust(&app, "A-1", hub, -2).await, StatusCode::CREATED);
    // Below what is reserved: refused, rolled back, and no event.
    assert_eq!(adjust(&app, "A-1", hub, -5).await, StatusCode::CONFLICT);

    let adjusted = published(&app, EventType::InventoryAdjusted).await;
    let data: Vec<_> = adjusted.iter().map(|e| e.data.clone()).collect();
    assert_eq!(
        data,
        vec![
            json!({"product_id": product, "sku": "A-1", "warehouse_id": hub, "delta": 10,
                   "reason": "receipt", "on_hand": 10, "reserved": 0}),
            json!({"product_id": product, "sku": "A-1", "warehouse_id": hub, "delta": -2,
                   "reason": "damage", "on_hand": 8, "reserved": 4}),
        ]
    );
    assert!(
        adjusted
            .iter()
            .all(|e| e.aggregate_id == product.to_string())
    );
    assert!(adjusted.iter().all(|e| e.producer == "inventory"));
    let reserved = published(&app, EventType::InventoryReserved).await;
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].data["lines"][0]["warehouse_id"], json!(hub));
}

#[tokio::test]
async fn a_transfer_records_one_adjustment_per_side() {
    let app = spawn_app().await;
    let north = app.warehouse("NORTH", 1).await;
    let south = app.warehouse("SOUTH", 2).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", north, 10).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/transfers",
            Role::Manager,
            json!({"sku": "A-1", "from_warehouse_id": north, "to_warehouse_id": south, "quantity": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let adjusted = published(&app, EventType::InventoryAdjusted).await;
    let sides: Vec<_> = adjusted[1..].iter().map(|e| e.data.clone()).collect();
    assert_eq!(
        sides,
        vec![
            json!({"product_id": product, "sku": "A-1", "warehouse_id": north, "delta": -4,
                   "reason": "transfer", "on_hand": 6, "reserved": 0}),
            json!({"product_id": product, "sku": "A-1", "warehouse_id": south, "delta": 4,
                   "reason": "transfer", "on_hand": 4, "reserved": 0}),
        ]
    );
}

#[tokio::test]
async fn stock_falling_to_the_reorder_point_records_low_stock_once() {
    let app = spawn_app().await;
    let hub = app.warehouse("HUB", 1).await;
    let product = app.product("LOW-1", json!({"reorder_point": 5})).await;
    app.receive("LOW-1", hub, 10).await;
    assert_eq!(adjust(&app, "LOW-1", hub, -4).await, StatusCode::CREATED);
    assert!(
        published(&app, EventType::InventoryLowStock)
            .await
            .is_empty()
    );
    assert_eq!(adjust(&app, "LOW-1", hub, -2).await, StatusCode::CREATED);
    // Staying low is no news.
    assert_eq!(adjust(&app, "LOW-1", hub, -1).await, StatusCode::CREATED);
    let low = published(&app, EventType::InventoryLowStock).await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0].aggregate_id, product.to_string());
    assert_eq!(
        low[0].data,
        json!({"product_id": product, "sku": "LOW-1", "warehouse_id": hub, "available": 4,
               "reorder_point": 5})
    );
}

#[tokio::test]
async fn a_manual_release_records_inventory_released() {
    let app = spawn_app().await;
    let hub = app.warehouse("HUB", 1).await;
    app.product("A-1", json!({})).await;
    app.receive("A-1", hub, 10).await;
    let order = Uuid::now_v7();
    let (_, body) = app
        .reserve(order, json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    let id = id_of(&body);
    for _ in 0..2 {
        let (status, body) = app
            .post(
                &format!("/api/v1/inventory/reservations/{id}/release"),
                Role::Dispatcher,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let released = published(&app, EventType::InventoryReleased).await;
    assert_eq!(released.len(), 1, "releasing again records nothing");
    assert_eq!(released[0].aggregate_id, order.to_string());
    assert_eq!(
        released[0].data,
        json!({"reservation_id": id, "order_id": order, "reason": "manual"})
    );
}
