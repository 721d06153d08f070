use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{codes, id_of, spawn_app};

/// `(warehouse_id, quantity)` of each line of a reservation body, sorted.
fn placements(body: &Value) -> Vec<(Uuid, i64)> {
    let mut lines: Vec<(Uuid, i64)> = body["lines"]
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
                l["quantity"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_reservation_draws_from_the_best_priority_warehouse_first() {
    let app = spawn_app().await;
    let near = app.warehouse("NEAR", 1).await;
    let far = app.warehouse("FAR", 2).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", near, 5).await;
    app.receive("A-1", far, 100).await;
    let order = Uuid::now_v7();
    let (status, body) = app
        .reserve(order, json!([{"sku": "A-1", "quantity": 7}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "held");
    assert_eq!(body["order_id"], order.to_string());
    assert!(body["expires_at"].is_string());
    let mut expected = vec![(near, 5), (far, 2)];
    expected.sort();
    assert_eq!(placements(&body), expected);
    assert_eq!(app.totals(product).await, (105, 7, 98));

    let (status, fetched) = app
        .get(
            &format!("/api/v1/inventory/reservations/{}", id_of(&body)),
            Role::Dispatcher,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, body);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn among_equal_priorities_the_warehouse_with_most_available_goes_first() {
    let app = spawn_app().await;
    let small = app.warehouse("SMALL", 5).await;
    let large = app.warehouse("LARGE", 5).await;
    app.product("A-1", json!({})).await;
    app.receive("A-1", small, 3).await;
    app.receive("A-1", large, 8).await;
    let (_, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    assert_eq!(placements(&body), [(large, 4)]);
    let _ = small;
}

#[tokio::test]
async fn reserving_again_for_the_same_order_returns_the_first_reservation() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let order = Uuid::now_v7();
    let (status, first) = app
        .reserve(order, json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = app
        .reserve(order, json!([{"sku": "A-1", "quantity": 6}]))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    assert_eq!(app.totals(product).await, (10, 4, 6), "reserved once");
}

#[tokio::test]
async fn a_reservation_stock_cannot_cover_lists_every_short_line_and_reserves_nothing() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let a = app.product("A-1", json!({})).await;
    let b = app.product("B-1", json!({})).await;
    let c = app.product("C-1", json!({})).await;
    app.receive("A-1", warehouse, 5).await;
    app.receive("B-1", warehouse, 5).await;
    let (status, body) = app
        .reserve(
            Uuid::now_v7(),
            json!([
                {"sku": "A-1", "quantity": 6},
                {"sku": "B-1", "quantity": 5},
                {"sku": "C-1", "quantity": 1},
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STOCK");
    let mut short: Vec<Value> = body["short_lines"].as_array().cloned().unwrap_or_default();
    short.sort_by_key(|l| l["sku"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        short,
        [
            json!({"sku": "A-1", "requested": 6, "available": 5}),
            json!({"sku": "C-1", "requested": 1, "available": 0}),
        ]
    );
    assert_eq!(app.totals(a).await, (5, 0, 5));
    assert_eq!(
        app.totals(b).await,
        (5, 0, 5),
        "the line that fit was not reserved either"
    );
    assert_eq!(app.totals(c).await, (0, 0, 0));
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(app.db.pool())
        .await
        .unwrap_or(-1);
    assert_eq!(held, 0);
}

#[tokio::test]
async fn repeated_skus_in_one_reservation_add_up() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 5).await;
    let (status, body) = app
        .reserve(
            Uuid::now_v7(),
            json!([{"sku": "A-1", "quantity": 2}, {"sku": "A-1", "quantity": 3}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(placements(&body), [(warehouse, 5)]);
    assert_eq!(app.totals(product).await, (5, 5, 0));
}

#[tokio::test]
async fn every_invalid_reservation_field_is_named_by_its_line() {
    let app = spawn_app().await;
    app.product("A-1", json!({})).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/reservations",
            Role::Admin,
            json!({"order_id": Uuid::now_v7(), "lines": [
                {"sku": "A-1", "quantity": 1},
                {"sku": "bad sku", "quantity": 0},
            ], "ttl_seconds": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        codes(&body),
        [
            ("lines[1].sku".to_owned(), "INVALID_FORMAT".to_owned()),
            ("lines[1].quantity".to_owned(), "OUT_OF_RANGE".to_owned()),
            ("ttl_seconds".to_owned(), "OUT_OF_RANGE".to_owned()),
        ]
    );
    let (status, body) = app.reserve(Uuid::now_v7(), json!([])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(codes(&body), [("lines".to_owned(), "REQUIRED".to_owned())]);
    let (status, body) = app
        .reserve(
            Uuid::now_v7(),
            json!([{"sku": "A-1", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("lines[1].sku".to_owned(), "UNKNOWN_SKU".to_owned())]
    );
    let (status, body) = app
        .post(
            "/api/v1/inventory/reservations",
            Role::Admin,
            json!({"lines": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        codes(&body),
        [("order_id".to_owned(), "REQUIRED".to_owned())]
    );
}

#[tokio::test]
async fn releasing_gives_the_stock_back_and_releasing_again_changes_nothing() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let (_, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    let path = format!("/api/v1/inventory/reservations/{}/release", id_of(&body));
    for _ in 0..2 {
        let (status, released) = app.post(&path, Role::Dispatcher, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{released}");
        assert_eq!(released["status"], "released");
        assert_eq!(app.totals(product).await, (10, 0, 10));
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/inventory/reservations/{}/release", Uuid::now_v7()),
            Role::Admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app
        .get(
            &format!("/api/v1/inventory/reservations/{}", Uuid::now_v7()),
            Role::Admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn a_backorderable_product_may_be_reserved_beyond_stock_even_with_none_received() {
    let app = spawn_app().await;
    app.warehouse("SECOND", 2).await;
    let best = app.warehouse("BEST", 1).await;
    let product = app.product("PRE-1", json!({"allow_backorder": true})).await;
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "PRE-1", "quantity": 3}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(placements(&body), [(best, 3)]);
    assert_eq!(app.totals(product).await, (0, 3, -3));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn inactive_warehouses_are_never_reserved_from() {
    let app = spawn_app().await;
    let closed = app.warehouse("CLOSED", 1).await;
    let open = app.warehouse("OPEN", 2).await;
    app.product("A-1", json!({})).await;
    app.receive("A-1", closed, 50).await;
    app.receive("A-1", open, 2).await;
    app.patch(
        &format!("/api/v1/inventory/warehouses/{closed}"),
        Role::Admin,
        json!({"active": false}),
    )
    .await;
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 3}]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["short_lines"][0]["available"], 2);
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 2}]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(placements(&body), [(open, 2)]);
}
