//! The internal operations the orders saga will use: commit and consume (shipping).

use inventory::domain::ReservationStatus;
use inventory::{
    ConsumeLine, Consumption, InventoryError, commit_reservation, consume_reservation,
};
use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{id_of, ok, spawn_app};

fn shipment(reference: &str, lines: &[(&str, i32)]) -> Consumption {
    Consumption {
        reference: reference.to_owned(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| ConsumeLine {
                sku: (*sku).to_owned(),
                warehouse_id: None,
                quantity: *quantity,
            })
            .collect(),
        actor: None,
    }
}

async fn lapse(app: &crate::helpers::TestApp, id: Uuid) {
    ok(sqlx::query(
        "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id)
    .execute(app.db.pool())
    .await);
}

#[tokio::test]
async fn a_committed_reservation_is_idempotent_and_never_expires() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let (_, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    let id = id_of(&body);
    for _ in 0..2 {
        let committed = ok(commit_reservation(&app.db, &app.cache, &app.messaging, id).await);
        assert_eq!(committed.status, ReservationStatus::Committed);
    }
    lapse(&app, id).await;
    assert_eq!(
        ok(inventory::sweep_expired(&app.db, &app.cache, &app.messaging, 100).await),
        0
    );
    assert_eq!(
        app.totals(product).await,
        (10, 4, 6),
        "a committed hold does not lapse"
    );
}

#[tokio::test]
async fn a_lapsed_hold_cannot_be_committed_and_is_expired_instead() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let (_, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 4}]))
        .await;
    let id = id_of(&body);
    lapse(&app, id).await;
    let refused = commit_reservation(&app.db, &app.cache, &app.messaging, id).await;
    assert!(
        matches!(&refused, Err(InventoryError::InvalidTransition { from, .. }) if from == "expired"),
        "{refused:?}"
    );
    let (_, now) = app
        .get(&format!("/api/v1/inventory/reservations/{id}"), Role::Admin)
        .await;
    assert_eq!(now["status"], "expired");
    assert_eq!(app.totals(product).await, (10, 0, 10));
    assert!(matches!(
        commit_reservation(&app.db, &app.cache, &app.messaging, Uuid::now_v7()).await,
        Err(InventoryError::NotFound(_))
    ));
}

#[tokio::test]
async fn consuming_ships_reserved_stock_once_per_shipment_until_nothing_is_left() {
    let app = spawn_app().await;
    let near = app.warehouse("NEAR", 1).await;
    let far = app.warehouse("FAR", 2).await;
    let a = app.product("A-1", json!({})).await;
    let b = app.product("B-1", json!({})).await;
    app.receive("A-1", near, 3).await;
    app.receive("A-1", far, 10).await;
    app.receive("B-1", near, 10).await;
    let (_, body) = app
        .reserve(
            Uuid::now_v7(),
            json!([{"sku": "A-1", "quantity": 5}, {"sku": "B-1", "quantity": 2}]),
        )
        .await;
    let id = id_of(&body);

    // A partial shipment spanning both warehouses of A-1; replaying it changes nothing.
    for _ in 0..2 {
        let after =
            ok(
                consume_reservation(&app.db, &app.cache, id, &shipment("ship-1", &[("A-1", 4)]))
                    .await,
            );
        assert_eq!(after.status, ReservationStatus::Committed);
        assert_eq!(app.totals(a).await, (9, 1, 8));
    }
    let over =
        consume_reservation(&app.db, &app.cache, id, &shipment("ship-2", &[("B-1", 3)])).await;
    assert!(
        matches!(over, Err(InventoryError::OverConsumption { .. })),
        "{over:?}"
    );

    // An empty shipment takes everything still held.
    let done = ok(consume_reservation(&app.db, &app.cache, id, &shipment("ship-3", &[])).await);
    assert_eq!(done.status, ReservationStatus::Consumed);
    assert!(done.lines.iter().all(|l| l.consumed == l.quantity));
    assert_eq!(app.totals(a).await, (8, 0, 8));
    assert_eq!(app.totals(b).await, (8, 0, 8));

    let (status, body) = app
        .post(
            &format!("/api/v1/inventory/reservations/{id}/release"),
            Role::Admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "INVALID_TRANSITION");
    let late = consume_reservation(&app.db, &app.cache, id, &shipment("ship-4", &[])).await;
    assert!(
        matches!(late, Err(InventoryError::InvalidTransition { .. })),
        "{late:?}"
    );

    let (_, ledger) = app
        .get("/api/v1/inventory/movements?reason=shipment", Role::Admin)
        .await;
    let references: Vec<&str> = ledger["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["reference"].as_str())
        .collect();
    assert_eq!(
        references.len(),
        4,
        "ship-1 from two warehouses, ship-3 for A-1 and B-1: {ledger}"
    );
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn releasing_a_partly_shipped_reservation_returns_only_the_rest() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let (_, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 6}]))
        .await;
    let id = id_of(&body);
    ok(consume_reservation(&app.db, &app.cache, id, &shipment("ship-1", &[("A-1", 2)])).await);
    let released =
        ok(inventory::release_reservation(&app.db, &app.cache, &app.messaging, id).await);
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(app.totals(product).await, (8, 0, 8));
    app.assert_ledger_explains_stock().await;
}
