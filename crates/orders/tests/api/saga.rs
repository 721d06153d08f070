//! The orders side of the saga, with the test playing inventory: reservations confirm, failures reject,
//! redeliveries change nothing twice, and orders nobody answered expire.

use messaging::EventType;
use messaging::events::{OrderConfirmed, OrderCreated, OrderRejected, OrderStatusChanged};
use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{id_of, ok, spawn_app, spawn_app_with};

fn status_changes(app_events: &[messaging::Envelope]) -> Vec<(String, String)> {
    app_events
        .iter()
        .map(|e| {
            let change: OrderStatusChanged = ok(e.data_as());
            (change.from, change.to)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_confirms_the_order_and_records_its_events() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let order = app
        .order_for(&customer, &[("SKU-A", 2, 1000), ("SKU-B", 1, 300)])
        .await;
    let id = id_of(&order);
    let warehouse = Uuid::now_v7();

    let created = app.outbox(EventType::OrderCreated, id).await;
    assert_eq!(created.len(), 1);
    let payload: OrderCreated = ok(created[0].data_as());
    assert_eq!(payload.customer_id, customer.id);
    assert_eq!(payload.currency, "EUR");
    let lines: Vec<(String, i64)> = payload
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    assert_eq!(lines, [("SKU-A".into(), 2), ("SKU-B".into(), 1)]);
    assert_eq!(created[0].producer, "orders");
    assert_eq!(created[0].aggregate_id, id.to_string());

    let answer = app
        .confirm(id, &[("SKU-A", warehouse, 2), ("SKU-B", warehouse, 1)])
        .await;
    let reservation: messaging::events::InventoryReserved = ok(answer.data_as());

    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["version"], 2);
    assert_eq!(
        order["reservation_id"],
        reservation.reservation_id.to_string()
    );

    let confirmed = app.outbox(EventType::OrderConfirmed, id).await;
    assert_eq!(confirmed.len(), 1);
    let payload: OrderConfirmed = ok(confirmed[0].data_as());
    assert_eq!(payload.order_id, id);
    assert_eq!(payload.reservation_id, Some(reservation.reservation_id));
    assert_eq!(confirmed[0].causation_id, answer.id);
    assert_eq!(confirmed[0].correlation_id, answer.correlation_id);
    assert_eq!(
        status_changes(&app.outbox(EventType::OrderStatusChanged, id).await),
        [("pending".into(), "confirmed".into())]
    );

    let timeline = app.timeline(id).await;
    let kinds: Vec<(&str, &str)> = timeline
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["to_status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("created", "pending"), ("status_changed", "confirmed")]
    );
    assert_eq!(timeline[1]["from_status"], "pending");
    assert_eq!(timeline[1]["actor_id"], serde_json::Value::Null);

    // The events reach the transport: the relay marks them sent.
    let db = &app.db;
    testkit::eventually(
        "the relay to send the order's events",
        crate::helpers::DEADLINE,
        || async {
            let unsent: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM orders.outbox WHERE aggregate_id = $1 AND sent_at IS NULL",
            )
            .bind(id.to_string())
            .fetch_one(db.pool())
            .await
            .ok()?;
            (unsent == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reservation_rejects_the_order_and_its_timeline_names_the_short_sku() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let id = id_of(
        &app.order_for(&customer, &[("SKU-A", 1, 100), ("SKU-SHORT", 5, 100)])
            .await,
    );

    app.reject(id, &[("SKU-SHORT", 5, 2)]).await;

    let timeline = app.timeline(id).await;
    let rejection = timeline
        .iter()
        .find(|e| e["to_status"] == "rejected")
        .unwrap_or_else(|| panic!("no rejection in {timeline:?}"));
    assert_eq!(rejection["from_status"], "pending");
    assert_eq!(
        rejection["detail"]["shortages"],
        json!([{"sku": "SKU-SHORT", "requested": 5, "available": 2}])
    );
    // The customer reads the same timeline.
    let reply = app
        .get(&format!("/api/v1/orders/{id}/events"), Some(&customer))
        .await;
    assert!(
        reply
            .expect(StatusCode::OK)
            .to_string()
            .contains("SKU-SHORT")
    );

    let rejected = app.outbox(EventType::OrderRejected, id).await;
    assert_eq!(rejected.len(), 1);
    let payload: OrderRejected = ok(rejected[0].data_as());
    assert_eq!(payload.shortages.len(), 1);
    assert_eq!(payload.shortages[0].sku, "SKU-SHORT");
    assert_eq!(
        status_changes(&app.outbox(EventType::OrderStatusChanged, id).await),
        [("pending".into(), "rejected".into())]
    );
    // A rejected order is settled: cancelling it is not a move the machine knows.
    let reply = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&customer),
            &json!({}),
        )
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
    assert_eq!(reply.body["current_status"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_delivered_twice_changes_nothing_twice() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let warehouse = Uuid::now_v7();
    let confirmed = id_of(&app.order_for(&customer, &[("SKU-A", 2, 100)]).await);
    let rejected = id_of(&app.order_for(&customer, &[("SKU-A", 2, 100)]).await);

    let reservation = app.confirm(confirmed, &[("SKU-A", warehouse, 2)]).await;
    let failure = app.reject(rejected, &[("SKU-A", 2, 0)]).await;
    app.redeliver(&reservation).await;
    app.redeliver(&failure).await;
    // A second, distinct answer for each order, handled after the redeliveries (one order's events are
    // handled in order): once it is in the inbox, so is everything before it.
    let late_reservation = app.reserved(confirmed, &[("SKU-A", warehouse, 2)]).await;
    let late_failure = app
        .inventory_says(
            rejected,
            &messaging::events::InventoryReservationFailed {
                order_id: rejected,
                shortages: vec![],
            },
        )
        .await;
    app.handled(&late_reservation).await;
    app.handled(&late_failure).await;

    let order = app.order(confirmed, &customer).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["version"], 2);
    assert_eq!(
        app.outbox(EventType::OrderConfirmed, confirmed).await.len(),
        1
    );
    assert_eq!(
        app.outbox(EventType::OrderStatusChanged, confirmed)
            .await
            .len(),
        1
    );
    let kinds: Vec<String> = app
        .timeline(confirmed)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["created", "status_changed", "late_reservation"]);
    // The hold was recorded once: 2 pieces can ship, not 4.
    let reply = app
        .create_shipment(&staff, confirmed, warehouse, &[("SKU-A", 3)], true)
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");

    let order = app.order(rejected, &customer).await;
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["version"], 2);
    assert_eq!(
        app.outbox(EventType::OrderRejected, rejected).await.len(),
        1
    );
    assert_eq!(
        app.outbox(EventType::OrderStatusChanged, rejected)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_nobody_answered_expires() {
    let app = spawn_app_with(&[
        ("LOGICORE_ORDERS__PENDING_TTL_SECS", "1"),
        ("LOGICORE_ORDERS__SWEEPER_INTERVAL_MS", "100"),
    ])
    .await;
    let customer = app.user(Role::Customer);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);

    let order = app.wait_for_status(id, "expired").await;
    assert_eq!(order["version"], 2);

    let expired = app.outbox(EventType::OrderExpired, id).await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].data["order_id"], id.to_string());
    assert_eq!(
        status_changes(&app.outbox(EventType::OrderStatusChanged, id).await),
        [("pending".into(), "expired".into())]
    );

    // A reservation arriving after the expiry leaves the order expired (inventory releases the hold when it
    // handles order.expired).
    let late = app.reserved(id, &[("SKU-A", Uuid::now_v7(), 1)]).await;
    app.handled(&late).await;
    assert_eq!(app.order(id, &customer).await["status"], "expired");
    assert!(app.outbox(EventType::OrderConfirmed, id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_released_by_inventory_cancels_a_confirmed_order_and_expires_a_pending_one() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let confirmed = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    let pending = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    let reservation = app
        .confirm(confirmed, &[("SKU-A", Uuid::now_v7(), 1)])
        .await;
    let reservation: messaging::events::InventoryReserved = ok(reservation.data_as());

    app.released(confirmed, reservation.reservation_id, "expired")
        .await;
    app.released(pending, Uuid::now_v7(), "manual").await;

    let order = app.order(confirmed, &customer).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["lines"][0]["quantity_cancelled"], 1);
    assert_eq!(
        app.outbox(EventType::OrderCancelled, confirmed).await.len(),
        1
    );
    assert_eq!(app.order(pending, &customer).await["status"], "expired");
    assert_eq!(app.outbox(EventType::OrderExpired, pending).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cancelled_before_inventory_answers_stays_cancelled() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    app.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .expect(StatusCode::OK);

    let late = app.reserved(id, &[("SKU-A", Uuid::now_v7(), 1)]).await;
    app.handled(&late).await;
    let reservation: messaging::events::InventoryReserved = ok(late.data_as());
    // Inventory then releases the hold on order.cancelled.
    app.released(id, reservation.reservation_id, "cancelled")
        .await;

    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reservation_id"], serde_json::Value::Null);
    assert!(app.outbox(EventType::OrderConfirmed, id).await.is_empty());
    assert_eq!(app.outbox(EventType::OrderCancelled, id).await.len(), 1);
    let kinds: Vec<String> = app
        .timeline(id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "status_changed",
            "late_reservation",
            "reservation_released"
        ]
    );
}
