//! The order and shipment state machines through the API: every move they do not list is 409
//! `INVALID_TRANSITION` naming both statuses, and shipments take only what inventory holds.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Reply, field_codes, id_of, spawn_app};

#[track_caller]
fn assert_refused(reply: &Reply, current: &str, requested: &str) {
    reply.expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
    assert_eq!(reply.body["current_status"], current, "{}", reply.body);
    assert_eq!(reply.body["requested_status"], requested, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_cannot_be_cancelled_again() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    let path = format!("/api/v1/orders/{id}/cancel");

    let reply = app
        .post(&path, Some(&customer), &json!({"reason": "too slow"}))
        .await;
    let order = reply.expect(StatusCode::OK);
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["lines"][0]["quantity_cancelled"], 1);

    let reply = app.post(&path, Some(&customer), &json!({})).await;
    assert_refused(&reply, "cancelled", "cancelled");
    let staff = app.user(Role::Admin);
    let reply = app.post(&path, Some(&staff), &json!({})).await;
    assert_refused(&reply, "cancelled", "cancelled");

    let timeline = app.timeline(id).await;
    let last = timeline.last().cloned().unwrap_or_default();
    assert_eq!(last["to_status"], "cancelled");
    assert_eq!(last["detail"]["reason"], "too slow");
    assert_eq!(last["actor_id"], customer.id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cannot_be_cancelled_once_it_shipped() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment = app
        .assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
        .await;
    app.drive(id_of(&shipment), &driver, &["picked_up"]).await;
    assert_eq!(app.order(id, &customer).await["status"], "shipped");

    let path = format!("/api/v1/orders/{id}/cancel");
    assert_refused(
        &app.post(&path, Some(&customer), &json!({})).await,
        "shipped",
        "cancelled",
    );
    assert_refused(
        &app.post(&path, Some(&staff), &json!({})).await,
        "shipped",
        "cancelled",
    );
    assert_eq!(app.order(id, &customer).await["status"], "shipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_confirmed_order_cancels_its_open_shipments() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;
    let shipment = app
        .assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 2)], false)
        .await;

    let reply = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&customer),
            &json!({"reason": "no"}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "cancelled");

    let reply = app
        .get(
            &format!("/api/v1/shipments/{}", id_of(&shipment)),
            Some(&staff),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "cancelled");
    let reply = app
        .track(id_of(&shipment), &driver, json!({"status": "picked_up"}))
        .await;
    assert_refused(&reply, "cancelled", "picked_up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_cannot_skip_statuses_or_move_once_cancelled() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;
    let shipment = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );

    assert_refused(
        &app.track(shipment, &driver, json!({"status": "delivered"}))
            .await,
        "assigned",
        "delivered",
    );
    assert_refused(
        &app.track(shipment, &driver, json!({"status": "out_for_delivery"}))
            .await,
        "assigned",
        "out_for_delivery",
    );

    let reply = app
        .post(
            &format!("/api/v1/shipments/{shipment}/cancel"),
            Some(&staff),
            &json!({"reason": "truck broke down"}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "cancelled");

    assert_refused(
        &app.track(shipment, &driver, json!({"status": "picked_up"}))
            .await,
        "cancelled",
        "picked_up",
    );
    assert_refused(
        &app.post(
            &format!("/api/v1/shipments/{shipment}/cancel"),
            Some(&staff),
            &json!({}),
        )
        .await,
        "cancelled",
        "cancelled",
    );
    assert_refused(
        &app.post(
            &format!("/api/v1/shipments/{shipment}/assign"),
            Some(&staff),
            &json!({"driver_id": driver.id}),
        )
        .await,
        "cancelled",
        "assigned",
    );
    // Nothing of it counted as shipped.
    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["lines"][0]["quantity_shipped"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_cannot_be_cancelled_after_pickup() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Manager);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    app.drive(shipment, &driver, &["picked_up"]).await;

    assert_refused(
        &app.post(
            &format!("/api/v1/shipments/{shipment}/cancel"),
            Some(&staff),
            &json!({}),
        )
        .await,
        "picked_up",
        "cancelled",
    );
    // Nor reassigned.
    let other = app.user(Role::Driver);
    assert_refused(
        &app.post(
            &format!("/api/v1/shipments/{shipment}/assign"),
            Some(&staff),
            &json!({"driver_id": other.id}),
        )
        .await,
        "picked_up",
        "assigned",
    );
    let reply = app
        .get(&format!("/api/v1/shipments/{shipment}"), Some(&staff))
        .await;
    let body = reply.expect(StatusCode::OK);
    assert_eq!(body["status"], "picked_up");
    assert_eq!(body["driver_id"], driver.id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_cannot_ship() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);

    let reply = app
        .create_shipment(&staff, id, Uuid::now_v7(), &[("SKU-A", 1)], false)
        .await;
    assert_refused(&reply, "pending", "shipped");

    let reply = app
        .create_shipment(
            &staff,
            Uuid::now_v7(),
            Uuid::now_v7(),
            &[("SKU-A", 1)],
            false,
        )
        .await;
    reply.expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    let reply = app
        .create_shipment(&customer, id, Uuid::now_v7(), &[("SKU-A", 1)], false)
        .await;
    reply.expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_takes_only_what_is_held_at_its_warehouse_and_a_cancelled_one_frees_it() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let (north, south) = (Uuid::now_v7(), Uuid::now_v7());
    let order = app
        .order_for(&customer, &[("SKU-A", 3, 100), ("SKU-B", 1, 100)])
        .await;
    let id = id_of(&order);
    app.confirm(id, &[("SKU-A", north, 3), ("SKU-B", south, 1)])
        .await;

    type Case<'a> = (&'a str, Uuid, &'a [(&'a str, i64)], &'a str);
    let refused: [Case; 4] = [
        (
            "more than held",
            north,
            &[("SKU-A", 4)],
            "lines[0].quantity",
        ),
        (
            "held elsewhere",
            south,
            &[("SKU-A", 1)],
            "lines[0].quantity",
        ),
        (
            "not in the order",
            north,
            &[("SKU-A", 1), ("SKU-Z", 1)],
            "lines[1].quantity",
        ),
        (
            "unknown warehouse",
            Uuid::now_v7(),
            &[("SKU-B", 1)],
            "lines[0].quantity",
        ),
    ];
    for (case, warehouse, lines, field) in refused {
        let reply = app
            .create_shipment(&staff, id, warehouse, lines, false)
            .await;
        reply.expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");
        assert_eq!(
            field_codes(&reply.body),
            [(field.to_owned(), "EXCEEDS_SHIPPABLE".to_owned())],
            "{case}"
        );
    }

    let first = app
        .create_shipment(&staff, id, north, &[("SKU-A", 2)], false)
        .await;
    let first_body = first.expect(StatusCode::CREATED);
    assert_eq!(first_body["status"], "pending");
    assert_eq!(
        first_body["lines"],
        json!([{"sku": "SKU-A", "quantity": 2}])
    );
    assert_eq!(first_body["warehouse_id"], north.to_string());
    let number = first_body["tracking_number"].as_str().unwrap_or_default();
    assert!(number.starts_with("LC") && number.len() == 18, "{number}");

    // One of three is left at north.
    let reply = app
        .create_shipment(&staff, id, north, &[("SKU-A", 2)], false)
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");
    let second = app
        .create_shipment(&staff, id, north, &[("SKU-A", 1)], false)
        .await;
    second.expect(StatusCode::CREATED);
    let reply = app
        .create_shipment(&staff, id, north, &[("SKU-A", 1)], false)
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");

    // Cancelling the first frees its two pieces.
    let reply = app
        .post(
            &format!("/api/v1/shipments/{}/cancel", first.id()),
            Some(&staff),
            &json!({}),
        )
        .await;
    reply.expect(StatusCode::OK);
    let again = app
        .create_shipment(&staff, id, north, &[("SKU-A", 2)], false)
        .await;
    again.expect(StatusCode::CREATED);
    let reply = app
        .create_shipment(&staff, id, north, &[("SKU-A", 1)], false)
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "NOTHING_TO_SHIP");

    let reply = app
        .create_shipment(&staff, id, south, &[("SKU-B", 1)], false)
        .await;
    reply.expect(StatusCode::CREATED);

    // Bad shipment bodies are 422 before anything is checked against the holds.
    let reply = app.create_shipment(&staff, id, north, &[], false).await;
    reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    let reply = app
        .create_shipment(&staff, id, north, &[("SKU-A", 0)], false)
        .await;
    assert_eq!(
        field_codes(reply.expect(StatusCode::UNPROCESSABLE_ENTITY)),
        [("lines[0].quantity".to_owned(), "OUT_OF_RANGE".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_order_announces_its_cancelled_shipments_with_their_lines() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2), ("SKU-B", 1)])
        .await;
    let shipment = app
        .create_shipment(&staff, id, warehouse, &[("SKU-A", 2), ("SKU-B", 1)], false)
        .await;
    let shipment_id = shipment.id();
    shipment.expect(StatusCode::CREATED);

    app.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&staff),
        &json!({"reason": "fraud"}),
    )
    .await
    .expect(StatusCode::OK);

    let changes = app
        .outbox(messaging::EventType::ShipmentStatusChanged, id)
        .await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].data["shipment_id"], shipment_id.to_string());
    assert_eq!(changes[0].data["from"], "pending");
    assert_eq!(changes[0].data["to"], "cancelled");
    assert_eq!(
        changes[0].data["lines"],
        json!([{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}])
    );
    assert_eq!(
        app.outbox(messaging::EventType::ShipmentCancelled, id)
            .await
            .len(),
        1
    );
    let kinds: Vec<String> = app
        .timeline(id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        kinds.contains(&"shipment_cancelled".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_shipments_cannot_take_the_same_pieces() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let (one, two) = (app.user(Role::Dispatcher), app.user(Role::Manager));
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;

    let (first, second) = tokio::join!(
        app.create_shipment(&one, id, warehouse, &[("SKU-A", 2)], false),
        app.create_shipment(&two, id, warehouse, &[("SKU-A", 2)], false),
    );

    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let loser = if first.status == StatusCode::CONFLICT {
        &first
    } else {
        &second
    };
    assert_eq!(loser.body["code"], "NOTHING_TO_SHIP");
    let staff = app.user(Role::Admin);
    let reply = app
        .get(&format!("/api/v1/shipments?order_id={id}"), Some(&staff))
        .await;
    assert_eq!(
        reply.expect(StatusCode::OK)["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
