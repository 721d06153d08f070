use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{codes, spawn_app};

#[tokio::test]
async fn a_receipt_raises_on_hand_and_writes_one_ledger_row() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/adjustments",
            Role::Admin,
            json!({"sku": "A-1", "warehouse_id": warehouse, "delta": 12, "reason": "receipt", "note": "PO 7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["on_hand"], 12);
    assert_eq!(body["available"], 12);
    assert_eq!(body["movement"]["reason"], "receipt");
    assert_eq!(body["movement"]["resulting_on_hand"], 12);
    assert_eq!(body["movement"]["note"], "PO 7");
    assert!(body["movement"]["actor"].is_string());
    app.post(
        "/api/v1/inventory/adjustments",
        Role::Manager,
        json!({"sku": "A-1", "warehouse_id": warehouse, "delta": -2, "reason": "damage"}),
    )
    .await;
    assert_eq!(app.totals(product).await, (10, 0, 10));

    let (_, ledger) = app
        .get("/api/v1/inventory/movements?sku=A-1", Role::Dispatcher)
        .await;
    let rows: Vec<(i64, String, i64)> = ledger["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["delta"].as_i64().unwrap_or_default(),
                m["reason"].as_str().unwrap_or_default().to_owned(),
                m["resulting_on_hand"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (12, "receipt".to_owned(), 12),
            (-2, "damage".to_owned(), 10)
        ]
    );
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn an_adjustment_may_not_take_stock_below_zero_or_below_what_is_reserved() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let adjust = |delta: i64| json!({"sku": "A-1", "warehouse_id": warehouse, "delta": delta, "reason": "count"});
    let (status, body) = app
        .post("/api/v1/inventory/adjustments", Role::Admin, adjust(-11))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "NEGATIVE_STOCK");

    let (status, _) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 8}]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post("/api/v1/inventory/adjustments", Role::Admin, adjust(-5))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "STOCK_BELOW_RESERVED");
    let (status, _) = app
        .post("/api/v1/inventory/adjustments", Role::Admin, adjust(-2))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.totals(product).await, (8, 8, 0));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn every_invalid_adjustment_field_is_named() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    app.product("A-1", json!({})).await;
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            json!({"sku": "A-1", "warehouse_id": warehouse, "delta": 0, "reason": "theft"}),
            vec![("reason", "INVALID_VALUE"), ("delta", "OUT_OF_RANGE")],
        ),
        (
            json!({"sku": "A-1", "warehouse_id": warehouse, "delta": 1, "reason": "transfer_in"}),
            vec![("reason", "INVALID_VALUE")],
        ),
        (
            json!({"sku": "NOPE", "warehouse_id": warehouse, "delta": 1, "reason": "receipt"}),
            vec![("sku", "UNKNOWN_SKU")],
        ),
        (
            json!({"sku": "A-1", "warehouse_id": Uuid::now_v7(), "delta": 1, "reason": "receipt"}),
            vec![("warehouse_id", "UNKNOWN_WAREHOUSE")],
        ),
        (
            json!({"sku": "A-1", "warehouse_id": "nope", "delta": 1, "reason": "receipt"}),
            vec![("warehouse_id", "INVALID_TYPE")],
        ),
    ];
    for (body, expected) in cases {
        let (status, problem) = app
            .post("/api/v1/inventory/adjustments", Role::Admin, body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(f, c)| (f.to_owned(), c.to_owned()))
            .collect();
        assert_eq!(codes(&problem), expected);
    }
}

#[tokio::test]
async fn stock_at_or_below_the_reorder_point_shows_in_the_below_reorder_filter() {
    let app = spawn_app().await;
    let main = app.warehouse("MAIN", 1).await;
    let spare = app.warehouse("SPARE", 2).await;
    app.product("LOW-1", json!({"reorder_point": 5})).await;
    let ok = app.product("OK-1", json!({"reorder_point": 1})).await;
    app.receive("LOW-1", main, 10).await;
    app.receive("OK-1", main, 10).await;
    app.receive("OK-1", spare, 3).await;
    let low = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l["sku"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (_, before) = app
        .get(
            "/api/v1/inventory/stock-levels?below_reorder=true",
            Role::Admin,
        )
        .await;
    assert!(low(&before).is_empty(), "{before}");

    // Reserving 6 of 10 leaves 4 available, at most the reorder point of 5.
    let (status, _) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "LOW-1", "quantity": 6}]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, after) = app
        .get(
            "/api/v1/inventory/stock-levels?below_reorder=true",
            Role::Manager,
        )
        .await;
    assert_eq!(low(&after), ["LOW-1"]);
    assert_eq!(after["data"][0]["available"], 4);
    assert_eq!(after["data"][0]["below_reorder"], true);
    assert!(after["data"][0]["low_stock_since"].is_string());

    let (_, by_warehouse) = app
        .get(
            &format!("/api/v1/inventory/stock-levels?warehouse_id={spare}"),
            Role::Dispatcher,
        )
        .await;
    assert_eq!(low(&by_warehouse), ["OK-1"]);
    let (status, body) = app
        .get(
            "/api/v1/inventory/stock-levels?warehouse_id=nope",
            Role::Dispatcher,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("warehouse_id".to_owned(), "INVALID_VALUE".to_owned())]
    );

    // Raising the reorder point re-evaluates every row of the product.
    app.patch(
        &format!("/api/v1/inventory/products/{ok}"),
        Role::Admin,
        json!({"reorder_point": 3}),
    )
    .await;
    let (_, raised) = app
        .get(
            "/api/v1/inventory/stock-levels?below_reorder=true",
            Role::Admin,
        )
        .await;
    assert_eq!(low(&raised), ["LOW-1", "OK-1"]);
}

#[tokio::test]
async fn the_ledger_filters_by_reason_warehouse_and_time_a_page_at_a_time() {
    let app = spawn_app().await;
    let main = app.warehouse("MAIN", 1).await;
    let spare = app.warehouse("SPARE", 2).await;
    app.product("A-1", json!({})).await;
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    app.receive("A-1", main, 5).await;
    app.receive("A-1", spare, 5).await;
    app.post(
        "/api/v1/inventory/adjustments",
        Role::Admin,
        json!({"sku": "A-1", "warehouse_id": main, "delta": -1, "reason": "damage"}),
    )
    .await;
    let count = |body: &Value| body["data"].as_array().map_or(0, Vec::len);
    let (_, damage) = app
        .get(
            "/api/v1/inventory/movements?reason=damage,count",
            Role::Admin,
        )
        .await;
    assert_eq!(count(&damage), 1);
    let (_, spare_only) = app
        .get(
            &format!("/api/v1/inventory/movements?warehouse_id={spare}"),
            Role::Admin,
        )
        .await;
    assert_eq!(count(&spare_only), 1);
    let since = start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, recent) = app
        .get(
            &format!("/api/v1/inventory/movements?since={since}&limit=2"),
            Role::Admin,
        )
        .await;
    assert_eq!(count(&recent), 2);
    let cursor = recent["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, rest) = app
        .get(
            &format!("/api/v1/inventory/movements?since={since}&limit=2&cursor={cursor}"),
            Role::Admin,
        )
        .await;
    assert_eq!(count(&rest), 1);
    let (_, none) = app
        .get(
            &format!("/api/v1/inventory/movements?until={since}"),
            Role::Admin,
        )
        .await;
    assert_eq!(count(&none), 0);

    let (status, body) = app
        .get("/api/v1/inventory/movements?reason=theft", Role::Admin)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("reason".to_owned(), "INVALID_VALUE".to_owned())]
    );
    let (status, body) = app
        .get("/api/v1/inventory/movements?since=yesterday", Role::Admin)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(codes(&body)[0].0, "since");
}

#[tokio::test]
async fn availability_lists_active_warehouses_by_priority_with_totals() {
    let app = spawn_app().await;
    let second = app.warehouse("SECOND", 20).await;
    let first = app.warehouse("FIRST", 10).await;
    let closed = app.warehouse("CLOSED", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", second, 2).await;
    app.receive("A-1", first, 3).await;
    app.receive("A-1", closed, 100).await;
    app.patch(
        &format!("/api/v1/inventory/warehouses/{closed}"),
        Role::Admin,
        json!({"active": false}),
    )
    .await;
    let (status, body) = app
        .get(
            &format!("/api/v1/inventory/products/{product}/availability"),
            Role::Customer,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let order: Vec<Uuid> = body["warehouses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            w["warehouse_id"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(order, [first, second]);
    assert_eq!(
        body["totals"],
        json!({"on_hand": 5, "reserved": 0, "available": 5})
    );
    let (status, _) = app
        .get(
            &format!("/api/v1/inventory/products/{}/availability", Uuid::now_v7()),
            Role::Customer,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
