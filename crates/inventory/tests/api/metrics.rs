//! The business metrics on `/metrics` move by exactly what committed: reservations by outcome, the units they
//! hold by warehouse, short lines and import rows; a refused or invalid request counts nothing it did not
//! do. The stock-below-reorder-point gauge follows the database.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{ok, spawn_app, spawn_app_with_events};

const RESERVED: &str = "outcome=\"reserved\"";
const SHORT: &str = "outcome=\"short\"";
const SERVICE: &str = "service=\"inventory\"";

fn warehouse(id: Uuid) -> String {
    format!("warehouse_id=\"{id}\"")
}

#[tokio::test]
async fn reservations_are_counted_by_outcome_and_their_units_by_warehouse() {
    let app = spawn_app().await;
    let north = app.warehouse("NORTH", 1).await;
    let south = app.warehouse("SOUTH", 2).await;
    app.product("BOLT-1", json!({})).await;
    app.receive("BOLT-1", north, 3).await;
    app.receive("BOLT-1", south, 10).await;
    let (reservations, units) = (
        "inventory_reservations_total",
        "inventory_reserved_units_total",
    );
    let short_lines = "inventory_reservation_short_lines_total";
    assert_eq!(app.metric(reservations, RESERVED).await, 0.0);

    // Invalid: refused before any transaction.
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "BOLT-1", "quantity": 0}]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(app.metric(reservations, "").await, 0.0);

    // NORTH's 3 first, then 2 from SOUTH; asking again for the same order is the same reservation.
    let order = Uuid::now_v7();
    let lines = json!([{"sku": "BOLT-1", "quantity": 5}]);
    let (status, body) = app.reserve(order, lines.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.reserve(order, lines).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.metric(reservations, RESERVED).await, 1.0);
    assert_eq!(app.metric(units, &warehouse(north)).await, 3.0);
    assert_eq!(app.metric(units, &warehouse(south)).await, 2.0);

    // More than is left, on two lines of which one is short: refused, counted as such, nothing held.
    app.product("NUT-1", json!({})).await;
    app.receive("NUT-1", north, 1).await;
    let (status, body) = app
        .reserve(
            Uuid::now_v7(),
            json!([{"sku": "BOLT-1", "quantity": 100}, {"sku": "NUT-1", "quantity": 1}]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STOCK", "{body}");
    assert_eq!(app.metric(reservations, SHORT).await, 1.0);
    assert_eq!(app.metric(short_lines, SERVICE).await, 1.0);
    assert_eq!(app.metric(reservations, RESERVED).await, 1.0);
    assert_eq!(app.metric(units, "warehouse_id").await, 5.0);
}

#[tokio::test]
async fn import_rows_are_counted_applied_or_rejected() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let rows = "inventory_import_rows_total";
    let import = |body: String, content_type: &'static str| {
        let request = app
            .client
            .post(app.server.url("/api/v1/inventory/import"))
            .bearer_auth(app.token(Role::Manager))
            .header("content-type", content_type)
            .body(body);
        async move { ok(request.send().await).status() }
    };

    // Not CSV: refused before reading a row.
    let status = import("A-1,Anvil,MAIN,5\n".into(), "application/json").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.metric(rows, "").await, 0.0);

    // Two good rows, one that does not parse, one for a warehouse that does not exist.
    let csv = "A-1,Anvil,MAIN,5\nB-1,Bolt,MAIN,7,2\nC-1,Cog,MAIN,lots\nD-1,Dial,NOWHERE,1\n";
    assert_eq!(import(csv.into(), "text/csv").await, StatusCode::OK);
    assert_eq!(app.metric(rows, "result=\"applied\"").await, 2.0);
    assert_eq!(app.metric(rows, "result=\"rejected\"").await, 2.0);
}

#[tokio::test]
async fn the_stock_below_reorder_point_gauge_follows_the_database_by_warehouse() {
    let app =
        spawn_app_with_events(&[("LOGICORE_INVENTORY__STOCK_GAUGE_INTERVAL_MS", "100")]).await;
    let main = app.warehouse("MAIN", 1).await;
    let spare = app.warehouse("SPARE", 2).await;
    app.product("A-1", json!({"reorder_point": 5})).await;
    app.product("B-1", json!({"reorder_point": 5})).await;
    let gauge = "inventory_stock_below_reorder_point";
    app.receive("A-1", main, 3).await;
    app.receive("B-1", main, 2).await;
    app.receive("B-1", spare, 50).await;
    app.metric_reaches(gauge, &warehouse(main), 2.0).await;
    // A warehouse without low stock has its series, at 0.
    app.metric_reaches(gauge, &warehouse(spare), 0.0).await;

    // Restocked above the reorder point: read again from the database, not decremented.
    app.receive("A-1", main, 10).await;
    app.metric_reaches(gauge, &warehouse(main), 1.0).await;
}
