use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{codes, spawn_app};

#[tokio::test]
async fn a_transfer_moves_stock_atomically_with_two_linked_ledger_rows() {
    let app = spawn_app().await;
    let from = app.warehouse("FROM", 1).await;
    let to = app.warehouse("TO", 2).await;
    app.product("A-1", json!({})).await;
    app.receive("A-1", from, 10).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/transfers",
            Role::Manager,
            json!({"sku": "A-1", "from_warehouse_id": from, "to_warehouse_id": to, "quantity": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reference = body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(body["movements"][0]["reason"], "transfer_out");
    assert_eq!(body["movements"][0]["resulting_on_hand"], 6);
    assert_eq!(body["movements"][1]["reason"], "transfer_in");
    assert_eq!(body["movements"][1]["resulting_on_hand"], 4);
    assert!(
        body["movements"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|m| m["reference"] == reference)
    );

    let (_, levels) = app
        .get("/api/v1/inventory/stock-levels?sku=A-1", Role::Dispatcher)
        .await;
    let mut on_hand: Vec<(Uuid, i64)> = levels["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["warehouse_id"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or_default(),
                l["on_hand"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    on_hand.sort();
    let mut expected = vec![(from, 6), (to, 4)];
    expected.sort();
    assert_eq!(on_hand, expected);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn a_transfer_of_more_than_is_available_names_the_short_line_and_moves_nothing() {
    let app = spawn_app().await;
    let from = app.warehouse("FROM", 1).await;
    let to = app.warehouse("TO", 2).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", from, 10).await;
    app.reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 7}]))
        .await;
    let transfer = |quantity: i64, target: Uuid| json!({"sku": "A-1", "from_warehouse_id": from, "to_warehouse_id": target, "quantity": quantity});
    let (status, body) = app
        .post("/api/v1/inventory/transfers", Role::Admin, transfer(4, to))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        body["short_lines"],
        json!([{"sku": "A-1", "requested": 4, "available": 3}])
    );
    assert_eq!(app.totals(product).await, (10, 7, 3));

    let (status, body) = app
        .post(
            "/api/v1/inventory/transfers",
            Role::Admin,
            transfer(1, from),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("to_warehouse_id".to_owned(), "SAME_WAREHOUSE".to_owned())]
    );
    let (status, body) = app
        .post("/api/v1/inventory/transfers", Role::Admin, transfer(0, to))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("quantity".to_owned(), "OUT_OF_RANGE".to_owned())]
    );
}
