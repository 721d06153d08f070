//! Product and availability caching: a read after any write sees the write, a repeated read is a cache
//! hit, and an unreachable Redis costs only the cache.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, ok, spawn_app, spawn_app_with};

fn unique_prefix() -> String {
    format!("lc-inventory-test-{}:", Uuid::now_v7())
}

async fn spawn_with_redis() -> TestApp {
    spawn_app_with(&[
        ("REDIS_ENABLED", "true"),
        ("REDIS_URL", "redis://127.0.0.1:6379/"),
        ("REDIS_KEY_PREFIX", &unique_prefix()),
    ])
    .await
}

/// The products `?sku=` finds, by name.
async fn names_by_sku(app: &TestApp, sku: &str) -> Vec<String> {
    let (status, body) = app
        .get(
            &format!("/api/v1/inventory/products?sku={sku}"),
            Role::Customer,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_else(|| panic!("no data in {body}"))
}

async fn cache_hits(app: &TestApp) -> u64 {
    let response = ok(app.client.get(app.server.url("/metrics")).send().await);
    let text = ok(response.text().await);
    text.lines()
        .find(|line| line.starts_with("cache_hits_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no cache_hits_total in {text}"))
}

#[tokio::test]
async fn with_redis_availability_read_after_each_stock_change_shows_the_change() {
    let app = spawn_with_redis().await;
    let (status, ready) = app.get("/readyz", Role::Customer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"]["cache"]["backend"], "redis", "{ready}");
    let north = app.warehouse("NORTH", 1).await;
    let south = app.warehouse("SOUTH", 2).await;
    let product = app.product("AV-1", json!({})).await;
    app.receive("AV-1", north, 10).await;
    assert_eq!(app.totals(product).await, (10, 0, 10));

    app.receive("AV-1", north, 5).await;
    assert_eq!(
        app.totals(product).await,
        (15, 0, 15),
        "after an adjustment"
    );

    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "AV-1", "quantity": 4}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        app.totals(product).await,
        (15, 4, 11),
        "after a reservation"
    );

    let release = format!(
        "/api/v1/inventory/reservations/{}/release",
        body["id"].as_str().unwrap_or_default()
    );
    let (status, body) = app.post(&release, Role::Dispatcher, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.totals(product).await, (15, 0, 15), "after a release");

    let transfer =
        json!({"sku": "AV-1", "from_warehouse_id": north, "to_warehouse_id": south, "quantity": 6});
    let (status, body) = app
        .post("/api/v1/inventory/transfers", Role::Manager, transfer)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("/api/v1/inventory/products/{product}/availability");
    let (_, availability) = app.get(&path, Role::Customer).await;
    let per_warehouse: Vec<i64> = availability["warehouses"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["on_hand"].as_i64().unwrap_or(-1))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(per_warehouse, [9, 6], "after a transfer: {availability}");

    let (status, body) = app
        .patch(
            &format!("/api/v1/inventory/warehouses/{south}"),
            Role::Admin,
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.totals(product).await,
        (9, 0, 9),
        "after a warehouse was deactivated"
    );

    let csv = "sku,name,warehouse_code,quantity\nAV-1,Product AV-1,NORTH,20\n".to_owned();
    let response = ok(app
        .client
        .post(app.server.url("/api/v1/inventory/import"))
        .bearer_auth(app.token(Role::Manager))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.totals(product).await, (20, 0, 20), "after an import");
}

#[tokio::test]
async fn with_redis_a_product_lookup_after_each_product_write_shows_the_write() {
    let app = spawn_with_redis().await;
    assert!(
        names_by_sku(&app, "LK-1").await.is_empty(),
        "unknown at first"
    );
    let product = app.product("LK-1", json!({})).await;
    assert_eq!(
        names_by_sku(&app, "LK-1").await,
        ["Product LK-1"],
        "after create"
    );

    let by_id = format!("/api/v1/inventory/products/{product}");
    let (status, _) = app.get(&by_id, Role::Customer).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .patch(&by_id, Role::Manager, json!({"name": "Renamed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        names_by_sku(&app, "LK-1").await,
        ["Renamed"],
        "after PATCH, by sku"
    );
    let (_, body) = app.get(&by_id, Role::Customer).await;
    assert_eq!(body["name"], "Renamed", "after PATCH, by id");

    app.warehouse("MAIN", 1).await;
    let csv = "sku,name,warehouse_code,quantity\nLK-1,Imported Name,MAIN,1\n".to_owned();
    let response = ok(app
        .client
        .post(app.server.url("/api/v1/inventory/import"))
        .bearer_auth(app.token(Role::Manager))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        names_by_sku(&app, "LK-1").await,
        ["Imported Name"],
        "after import, by sku"
    );
    let (_, body) = app.get(&by_id, Role::Customer).await;
    assert_eq!(body["name"], "Imported Name", "after import, by id");
}

#[tokio::test]
async fn a_repeated_product_read_is_answered_from_the_cache() {
    let app = spawn_app().await;
    let product = app.product("HIT-1", json!({})).await;
    let path = format!("/api/v1/inventory/products/{product}");
    assert_eq!(app.get(&path, Role::Customer).await.0, StatusCode::OK);
    let before = cache_hits(&app).await;
    assert_eq!(app.get(&path, Role::Customer).await.0, StatusCode::OK);
    assert_eq!(names_by_sku(&app, "HIT-1").await, ["Product HIT-1"]);
    assert_eq!(names_by_sku(&app, "HIT-1").await, ["Product HIT-1"]);
    assert!(
        cache_hits(&app).await >= before + 2,
        "by id and the second by sku were hits"
    );
}

#[tokio::test]
async fn with_redis_unreachable_requests_succeed_and_readiness_reports_the_cache_degraded() {
    let app = spawn_app_with(&[
        ("REDIS_ENABLED", "true"),
        ("REDIS_URL", "redis://127.0.0.1:1/"),
        ("REDIS_KEY_PREFIX", &unique_prefix()),
    ])
    .await;
    let warehouse = app.warehouse("ONLY", 1).await;
    let product = app.product("DOWN-1", json!({})).await;
    app.receive("DOWN-1", warehouse, 3).await;
    assert_eq!(app.totals(product).await, (3, 0, 3));
    app.receive("DOWN-1", warehouse, 2).await;
    assert_eq!(app.totals(product).await, (5, 0, 5));
    assert_eq!(names_by_sku(&app, "DOWN-1").await, ["Product DOWN-1"]);

    let (status, ready): (StatusCode, Value) = app.get("/readyz", Role::Customer).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["cache"]["status"], "degraded", "{ready}");
}
