//! Inventory's side of the order saga, driven through the real PostgreSQL transport: an "orders" producer
//! on the same database records `order.*` and `shipment.*` events in its own outbox, its relay delivers
//! them, and the inventory service's consumer handles them; its answers are read from its outbox.

mod harness;

use std::collections::HashMap;

use messaging::events::{OrderCancelled, OrderConfirmed, OrderExpired};
use messaging::{Envelope, EventType};
use serde_json::json;
use uuid::Uuid;

use self::harness::{DEADLINE, Saga, assert_caused_by};
use crate::helpers::ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_reserved_across_warehouses_and_a_redelivery_has_no_second_effect() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let north = app.warehouse("NORTH", 1).await;
    let south = app.warehouse("SOUTH", 2).await;
    let bolts = app.product("BOLT-1", json!({})).await;
    app.receive("BOLT-1", north, 3).await;
    app.receive("BOLT-1", south, 10).await;
    let order_id = Uuid::now_v7();

    let created = saga.order(order_id, &[("BOLT-1", 5)]).await;

    let reserved = saga.only(EventType::InventoryReserved).await;
    assert_caused_by(&reserved, &created);
    assert_eq!(reserved.aggregate_id, order_id.to_string());
    let data = &reserved.data;
    assert_eq!(data["order_id"], json!(order_id));
    // Priority order: NORTH's 3 first, the rest from SOUTH.
    assert_eq!(
        data["lines"],
        json!([
            {"sku": "BOLT-1", "warehouse_id": north, "quantity": 3},
            {"sku": "BOLT-1", "warehouse_id": south, "quantity": 2},
        ])
    );
    let expires_at: chrono::DateTime<chrono::Utc> =
        ok(serde_json::from_value(data["expires_at"].clone()));
    let ttl = (expires_at - chrono::Utc::now()).num_seconds();
    assert!((890..=900).contains(&ttl), "default hold time, got {ttl}s");
    assert_eq!(
        saga.stock(bolts).await,
        HashMap::from([(north, (3, 3)), (south, (10, 2))])
    );

    // The same event again (a relay republish), then a later event of the order as a barrier.
    saga.resend(&created).await;
    saga.barrier(order_id).await;
    // And a fresh event for the same order (the orders service re-sending after a crash).
    saga.order(order_id, &[("BOLT-1", 5)]).await;
    assert_eq!(saga.published(EventType::InventoryReserved).await.len(), 1);
    assert!(
        saga.published(EventType::InventoryReservationFailed)
            .await
            .is_empty()
    );
    let reservations: i64 = ok(sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(app.db.pool())
        .await);
    assert_eq!(reservations, 1);
    assert_eq!(app.totals(bolts).await, (13, 5, 8));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_stock_or_an_unknown_sku_fails_the_reservation_and_holds_nothing() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let hub = app.warehouse("HUB", 1).await;
    let gears = app.product("GEAR-1", json!({})).await;
    let nuts = app.product("NUT-1", json!({})).await;
    app.receive("GEAR-1", hub, 4).await;
    app.receive("NUT-1", hub, 50).await;

    let greedy = Uuid::now_v7();
    let created = saga.order(greedy, &[("NUT-1", 2), ("GEAR-1", 5)]).await;
    let failed = saga.only(EventType::InventoryReservationFailed).await;
    assert_caused_by(&failed, &created);
    assert_eq!(failed.aggregate_id, greedy.to_string());
    assert_eq!(
        failed.data,
        json!({"order_id": greedy, "shortages": [{"sku": "GEAR-1", "requested": 5, "available": 4}]})
    );
    assert_eq!(saga.reservation_status(greedy).await, None);
    assert_eq!(app.totals(gears).await, (4, 0, 4));
    assert_eq!(app.totals(nuts).await, (50, 0, 50), "all or nothing");

    let unknown = Uuid::now_v7();
    saga.order(unknown, &[("NOPE-1", 1), ("NUT-1", 1)]).await;
    let failures = saga.published(EventType::InventoryReservationFailed).await;
    assert_eq!(failures.len(), 2);
    assert_eq!(
        failures[1].data["shortages"],
        json!([{"sku": "NOPE-1", "requested": 1, "available": 0}])
    );
    assert!(
        saga.published(EventType::InventoryReserved)
            .await
            .is_empty()
    );
    let held: i64 = ok(sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(app.db.pool())
        .await);
    assert_eq!(held, 0);
    app.assert_ledger_explains_stock().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirming_commits_and_cancelling_gives_the_stock_back() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let hub = app.warehouse("HUB", 1).await;
    let gears = app.product("GEAR-1", json!({})).await;
    app.receive("GEAR-1", hub, 4).await;
    let order_id = Uuid::now_v7();
    saga.order(order_id, &[("GEAR-1", 3)]).await;
    assert_eq!(app.totals(gears).await, (4, 3, 1));

    let confirmed = OrderConfirmed {
        order_id,
        reservation_id: None,
    };
    let confirmed = saga.send_and_wait(order_id, &confirmed).await;
    let committed = saga.only(EventType::InventoryCommitted).await;
    assert_caused_by(&committed, &confirmed);
    assert_eq!(committed.data["order_id"], json!(order_id));
    assert_eq!(
        saga.reservation_status(order_id).await.as_deref(),
        Some("committed")
    );

    let cancelled = OrderCancelled {
        order_id,
        reason: "changed my mind".into(),
        cancelled_by: None,
    };
    let cancelled = saga.send_and_wait(order_id, &cancelled).await;
    let released = saga.only(EventType::InventoryReleased).await;
    assert_caused_by(&released, &cancelled);
    assert_eq!(released.aggregate_id, order_id.to_string());
    assert_eq!(released.data["reason"], "cancelled");
    assert_eq!(
        saga.reservation_status(order_id).await.as_deref(),
        Some("released")
    );
    assert_eq!(app.totals(gears).await, (4, 0, 4));

    // Expiring the cancelled order, or cancelling one inventory never reserved, changes nothing.
    saga.send_and_wait(order_id, &OrderExpired { order_id })
        .await;
    let stranger = Uuid::now_v7();
    saga.send_and_wait(stranger, &OrderExpired { order_id: stranger })
        .await;
    assert_eq!(saga.published(EventType::InventoryReleased).await.len(), 1);
    assert_eq!(app.totals(gears).await, (4, 0, 4));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_order_releases_its_hold_with_reason_expired() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let hub = app.warehouse("HUB", 1).await;
    let cogs = app.product("COG-1", json!({})).await;
    app.receive("COG-1", hub, 10).await;
    let order_id = Uuid::now_v7();
    saga.order(order_id, &[("COG-1", 2)]).await;
    let expired = saga
        .send_and_wait(order_id, &OrderExpired { order_id })
        .await;
    let released = saga.only(EventType::InventoryReleased).await;
    assert_caused_by(&released, &expired);
    assert_eq!(released.data["reason"], "expired");
    assert_eq!(
        saga.reservation_status(order_id).await.as_deref(),
        Some("released")
    );
    assert_eq!(app.totals(cogs).await, (10, 0, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_lapses_before_confirmation_is_announced_as_expired() {
    let saga = Saga::start_with(&[
        ("LOGICORE_INVENTORY__RESERVATION_TTL_SECS", "1"),
        ("LOGICORE_INVENTORY__SWEEPER_INTERVAL_MS", "50"),
    ])
    .await;
    let app = &saga.app;
    let hub = app.warehouse("HUB", 1).await;
    let cogs = app.product("COG-1", json!({})).await;
    app.receive("COG-1", hub, 10).await;
    let order_id = Uuid::now_v7();
    saga.order(order_id, &[("COG-1", 2)]).await;

    // The sweeper expires the lapsed hold and says so.
    let swept = testkit::eventually("the sweeper to expire the hold", DEADLINE, || async {
        let mut released = saga.published(EventType::InventoryReleased).await;
        (released.len() == 1).then(|| released.remove(0))
    })
    .await;
    assert_eq!(swept.data["reason"], "expired");
    assert_eq!(swept.aggregate_id, order_id.to_string());
    assert_eq!(
        saga.reservation_status(order_id).await.as_deref(),
        Some("expired")
    );
    assert_eq!(app.totals(cogs).await, (10, 0, 10));

    // A confirmation arriving after that cannot commit; the orders service is told again, in its flow.
    let confirmed = OrderConfirmed {
        order_id,
        reservation_id: None,
    };
    let confirmed = saga.send_and_wait(order_id, &confirmed).await;
    let released = saga.published(EventType::InventoryReleased).await;
    assert_eq!(released.len(), 2);
    assert_caused_by(&released[1], &confirmed);
    assert_eq!(released[1].data["reason"], "expired");
    assert!(
        saga.published(EventType::InventoryCommitted)
            .await
            .is_empty()
    );
    assert_eq!(app.totals(cogs).await, (10, 0, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picked_up_shipment_consumes_its_stock_and_a_returned_one_restocks_it_once() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let north = app.warehouse("NORTH", 1).await;
    let south = app.warehouse("SOUTH", 2).await;
    let bolts = app.product("BOLT-1", json!({})).await;
    app.receive("BOLT-1", north, 3).await;
    app.receive("BOLT-1", south, 10).await;
    let order_id = Uuid::now_v7();
    saga.order(order_id, &[("BOLT-1", 5)]).await;
    let confirmed = OrderConfirmed {
        order_id,
        reservation_id: None,
    };
    saga.send_and_wait(order_id, &confirmed).await;

    let shipment = Uuid::now_v7();
    let picked = saga
        .shipment(order_id, shipment, "picked_up", north, &[("BOLT-1", 3)])
        .await;
    assert_eq!(
        saga.stock(bolts).await,
        HashMap::from([(north, (0, 0)), (south, (10, 2))])
    );
    // The same shipment reported again, as a new event: the shipment id makes it a no-op.
    saga.resend(&picked).await;
    saga.shipment(order_id, shipment, "picked_up", north, &[("BOLT-1", 3)])
        .await;
    assert_eq!(
        saga.stock(bolts).await,
        HashMap::from([(north, (0, 0)), (south, (10, 2))])
    );
    let shipped: Vec<(i32, Option<String>)> = ok(sqlx::query_as(
        "SELECT delta, reference FROM movements WHERE reason = 'shipment' ORDER BY seq",
    )
    .fetch_all(app.db.pool())
    .await);
    assert_eq!(shipped, vec![(-3, Some(shipment.to_string()))]);
    assert_eq!(
        saga.reservation_status(order_id).await.as_deref(),
        Some("committed"),
        "two still held in SOUTH"
    );

    // Other moves of the shipment change nothing.
    saga.shipment(order_id, shipment, "in_transit", north, &[("BOLT-1", 3)])
        .await;
    let returned = saga
        .shipment(order_id, shipment, "returned", north, &[("BOLT-1", 3)])
        .await;
    saga.shipment(order_id, shipment, "returned", north, &[("BOLT-1", 3)])
        .await;
    assert_eq!(
        saga.stock(bolts).await,
        HashMap::from([(north, (3, 0)), (south, (10, 2))])
    );
    let restocked: Vec<(i32, String, Option<String>, i32)> = ok(sqlx::query_as(
        "SELECT delta, reason, reference, resulting_on_hand FROM movements \
         WHERE warehouse_id = $1 ORDER BY seq",
    )
    .bind(north)
    .fetch_all(app.db.pool())
    .await);
    assert_eq!(
        restocked,
        vec![
            (3, "receipt".into(), None, 3),
            (-3, "shipment".into(), Some(shipment.to_string()), 0),
            (3, "return".into(), Some(shipment.to_string()), 3),
        ]
    );
    let adjusted = saga.published(EventType::InventoryAdjusted).await;
    let returns: Vec<&Envelope> = adjusted
        .iter()
        .filter(|e| e.data["reason"] == "return")
        .collect();
    assert_eq!(returns.len(), 1, "{adjusted:?}");
    assert_caused_by(returns[0], &returned);
    assert_eq!(returns[0].aggregate_id, bolts.to_string());
    assert_eq!(
        returns[0].data,
        json!({"product_id": bolts, "sku": "BOLT-1", "warehouse_id": north, "delta": 3,
               "reason": "return", "on_hand": 3, "reserved": 0})
    );
    app.assert_ledger_explains_stock().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_dead_lettered_without_effects() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let hub = app.warehouse("HUB", 1).await;
    let gears = app.product("GEAR-1", json!({})).await;
    app.receive("GEAR-1", hub, 4).await;
    let order_id = Uuid::now_v7();
    let bad = ok(Envelope::new(
        EventType::OrderCreated,
        "orders",
        order_id,
        &json!({"order_id": order_id, "lines": "lots"}),
    ));
    saga.resend(&bad).await;
    let transport = app.messaging.transport().clone();
    let dead = testkit::eventually("the event to be dead-lettered", DEADLINE, || async {
        let letters = transport
            .dead_letters(inventory::SAGA_GROUP, 10)
            .await
            .ok()?;
        letters.into_iter().find(|l| l.event_id == bad.id)
    })
    .await;
    assert_eq!(
        dead.attempts, 1,
        "rejected, not retried: {}",
        dead.last_error
    );
    assert!(dead.last_error.contains("malformed"), "{}", dead.last_error);
    assert_eq!(saga.reservation_status(order_id).await, None);
    assert_eq!(app.totals(gears).await, (4, 0, 4));
    assert!(
        saga.published(EventType::InventoryReservationFailed)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_counts_a_reservation_and_a_shortage_once_each_after_its_commit() {
    let saga = Saga::start().await;
    let app = &saga.app;
    let north = app.warehouse("NORTH", 1).await;
    app.product("BOLT-1", json!({})).await;
    app.receive("BOLT-1", north, 4).await;
    let reservations = "inventory_reservations_total";

    let held = Uuid::now_v7();
    let created = saga.order(held, &[("BOLT-1", 3)]).await;
    app.metric_reaches(reservations, "outcome=\"reserved\"", 1.0)
        .await;
    let units = format!("warehouse_id=\"{north}\"");
    assert_eq!(
        app.metric("inventory_reserved_units_total", &units).await,
        3.0
    );

    let short = Uuid::now_v7();
    saga.order(short, &[("BOLT-1", 3), ("NOPE-1", 1)]).await;
    app.metric_reaches(reservations, "outcome=\"short\"", 1.0)
        .await;
    let short_lines = "inventory_reservation_short_lines_total";
    // The unknown sku is short without trying the rest (see `OrderSaga::reserve`).
    assert_eq!(app.metric(short_lines, "").await, 1.0);

    // A redelivery of the first order's event changes nothing, so counts nothing.
    saga.resend(&created).await;
    saga.barrier(held).await;
    assert_eq!(app.metric(reservations, "outcome=\"reserved\"").await, 1.0);
    assert_eq!(
        app.metric("inventory_reserved_units_total", &units).await,
        3.0
    );
}
