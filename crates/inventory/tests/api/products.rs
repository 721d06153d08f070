use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{codes, id_of, spawn_app};

#[tokio::test]
async fn a_manager_creates_a_product_that_any_caller_can_read() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/products",
            Role::Manager,
            json!({"sku": "ab-1/X", "name": "Anvil", "weight_grams": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sku"], "ab-1/X", "skus keep their case");
    assert_eq!(body["reorder_point"], 0);
    assert_eq!(body["allow_backorder"], false);
    assert_eq!(body["weight_grams"], 5000);
    let id = id_of(&body);
    let (status, fetched) = app
        .get(&format!("/api/v1/inventory/products/{id}"), Role::Customer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, body);
}

#[tokio::test]
async fn a_second_product_with_the_same_sku_is_a_conflict() {
    let app = spawn_app().await;
    app.product("SKU-1", json!({})).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/products",
            Role::Admin,
            json!({"sku": "SKU-1", "name": "Dup"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "SKU_TAKEN");
}

#[tokio::test]
async fn every_invalid_product_field_is_named() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/products",
            Role::Admin,
            json!({"sku": "has space", "name": "", "weight_grams": -5, "reorder_point": -1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        codes(&body),
        [
            ("sku".to_owned(), "INVALID_FORMAT".to_owned()),
            ("name".to_owned(), "REQUIRED".to_owned()),
            ("weight_grams".to_owned(), "OUT_OF_RANGE".to_owned()),
            ("reorder_point".to_owned(), "OUT_OF_RANGE".to_owned()),
        ]
    );
    let (status, body) = app
        .post(
            "/api/v1/inventory/products",
            Role::Admin,
            json!({"sku": "A", "name": "B", "allow_backorder": "yes"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("allow_backorder".to_owned(), "INVALID_TYPE".to_owned())]
    );
}

#[tokio::test]
async fn products_are_listed_by_sku_or_search_text_a_page_at_a_time() {
    let app = spawn_app().await;
    let bolt = app.product("BOLT-1", json!({"name": "Steel bolt"})).await;
    let nut = app.product("NUT-1", json!({"name": "Brass nut"})).await;
    let washer = app.product("WASH-1", json!({"name": "Steel washer"})).await;

    let (_, by_sku) = app
        .get("/api/v1/inventory/products?sku=NUT-1,WASH-1", Role::Driver)
        .await;
    let ids: Vec<Uuid> = by_sku["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    assert_eq!(ids, [nut, washer]);
    let (_, by_text) = app
        .get("/api/v1/inventory/products?q=STEEL", Role::Driver)
        .await;
    let ids: Vec<Uuid> = by_text["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    assert_eq!(ids, [bolt, washer]);
    let (_, literal) = app
        .get("/api/v1/inventory/products?q=%25", Role::Driver)
        .await;
    assert_eq!(
        literal["data"].as_array().map(Vec::len),
        Some(0),
        "% is matched literally"
    );

    let (_, page) = app
        .get("/api/v1/inventory/products?limit=1", Role::Customer)
        .await;
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    let (_, next) = app
        .get(
            &format!("/api/v1/inventory/products?limit=1&cursor={cursor}"),
            Role::Customer,
        )
        .await;
    assert_eq!(id_of(&next["data"][0]), nut);
}

#[tokio::test]
async fn a_product_patch_changes_its_fields_and_clears_its_weight_but_never_the_sku() {
    let app = spawn_app().await;
    let id = app.product("P-1", json!({"weight_grams": 10})).await;
    let path = format!("/api/v1/inventory/products/{id}");
    let (status, body) = app
        .patch(
            &path,
            Role::Manager,
            json!({"name": "Renamed", "weight_grams": null, "reorder_point": 7, "allow_backorder": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Renamed");
    assert!(body["weight_grams"].is_null());
    assert_eq!(body["reorder_point"], 7);
    assert_eq!(body["allow_backorder"], true);

    let (status, body) = app.patch(&path, Role::Manager, json!({"sku": "P-2"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app
        .patch(
            &format!("/api/v1/inventory/products/{}", Uuid::now_v7()),
            Role::Admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn backorders_cannot_be_turned_off_while_reservations_exceed_stock() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("BO-1", json!({"allow_backorder": true})).await;
    app.receive("BO-1", warehouse, 1).await;
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "BO-1", "quantity": 3}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.totals(product).await, (1, 3, -2));

    let path = format!("/api/v1/inventory/products/{product}");
    let (status, body) = app
        .patch(&path, Role::Admin, json!({"allow_backorder": false}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "BACKORDERS_OUTSTANDING");
    app.assert_ledger_explains_stock().await;
}
