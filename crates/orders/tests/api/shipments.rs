//! Shipments: dispatchers create and assign, the assigned driver reports, the order follows
//! its lines, and delivery needs its proof.

use messaging::EventType;
use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{field_codes, id_of, ids, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picking_up_moves_the_order_to_partially_shipped_then_shipped() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let (first_driver, second_driver) = (app.user(Role::Driver), app.user(Role::Driver));
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 3), ("SKU-B", 1)])
        .await;
    let first = app
        .assigned_shipment(&staff, &first_driver, id, warehouse, &[("SKU-A", 2)], false)
        .await;
    assert_eq!(first["status"], "assigned");
    assert_eq!(first["driver_id"], first_driver.id.to_string());
    let second = app
        .assigned_shipment(
            &staff,
            &second_driver,
            id,
            warehouse,
            &[("SKU-A", 1), ("SKU-B", 1)],
            false,
        )
        .await;

    app.drive(id_of(&first), &first_driver, &["picked_up"])
        .await;
    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "partially_shipped");
    assert_eq!(order["lines"][0]["quantity_shipped"], 2);
    assert_eq!(order["lines"][1]["quantity_shipped"], 0);

    app.drive(id_of(&second), &second_driver, &["picked_up"])
        .await;
    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "shipped");
    assert_eq!(order["lines"][0]["quantity_shipped"], 3);
    assert_eq!(order["lines"][1]["quantity_shipped"], 1);

    let changes: Vec<(String, String)> = app
        .outbox(EventType::OrderStatusChanged, id)
        .await
        .iter()
        .map(|e| {
            (
                e.data["from"].as_str().unwrap_or_default().to_owned(),
                e.data["to"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("pending".into(), "confirmed".into()),
            ("confirmed".into(), "partially_shipped".into()),
            ("partially_shipped".into(), "shipped".into()),
        ]
    );
    // shipment.* events travel on the order's stream.
    assert_eq!(app.outbox(EventType::ShipmentCreated, id).await.len(), 2);
    assert_eq!(app.outbox(EventType::ShipmentAssigned, id).await.len(), 2);
    let picked: Vec<_> = app
        .outbox(EventType::ShipmentStatusChanged, id)
        .await
        .into_iter()
        .filter(|e| e.data["to"] == "picked_up")
        .collect();
    assert_eq!(picked.len(), 2);
    assert_eq!(picked[0].data["warehouse_id"], warehouse.to_string());
    assert_eq!(
        picked[0].data["lines"],
        json!([{"sku": "SKU-A", "quantity": 2}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_needs_the_proof_first_and_then_delivers_the_order() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;
    let shipment = app
        .assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 2)], true)
        .await;
    assert_eq!(shipment["proof_required"], true);
    let shipment_id = id_of(&shipment);
    let proof_path = format!("/api/v1/shipments/{shipment_id}/proof");
    let proof =
        json!({"type": "signature", "receiver_name": "Ada Lovelace", "reference": "sig/123"});

    // Proof only once it is out for delivery.
    app.drive(shipment_id, &driver, &["picked_up", "in_transit"])
        .await;
    let reply = app.post(&proof_path, Some(&driver), &proof).await;
    reply.expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
    app.drive(shipment_id, &driver, &["out_for_delivery"]).await;

    let reply = app
        .track(shipment_id, &driver, json!({"status": "delivered"}))
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "PROOF_REQUIRED");
    // A failed attempt and a retry are fine on the way.
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "delivery_failed", "reason": "recipient_not_home"}),
        )
        .await;
    assert_eq!(
        reply.expect(StatusCode::CREATED)["reason"],
        "recipient_not_home"
    );
    app.drive(shipment_id, &driver, &["out_for_delivery"]).await;

    // Only the driver records the proof.
    app.post(&proof_path, Some(&staff), &proof)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    let bad = json!({"type": "hologram", "receiver_name": " ", "reference": "x"});
    let reply = app.post(&proof_path, Some(&driver), &bad).await;
    let mut fields: Vec<String> = field_codes(reply.expect(StatusCode::UNPROCESSABLE_ENTITY))
        .into_iter()
        .map(|f| f.0)
        .collect();
    fields.sort();
    assert_eq!(fields, ["receiver_name", "type"]);

    let reply = app.post(&proof_path, Some(&driver), &proof).await;
    let body = reply.expect(StatusCode::CREATED);
    assert_eq!(body["proof"]["type"], "signature");
    assert_eq!(body["proof"]["receiver_name"], "Ada Lovelace");
    assert_eq!(body["proof"]["recorded_by"], driver.id.to_string());
    app.post(&proof_path, Some(&driver), &proof)
        .await
        .expect_problem(StatusCode::CONFLICT, "CONFLICT");

    let reply = app
        .track(shipment_id, &driver, json!({"status": "delivered"}))
        .await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], true);

    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "delivered");
    assert_eq!(order["lines"][0]["quantity_delivered"], 2);
    let reply = app
        .get(&format!("/api/v1/shipments/{shipment_id}"), Some(&customer))
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "delivered");
    let delivered = app.outbox(EventType::ShipmentDelivered, id).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].data["receiver_name"], "Ada Lovelace");
    // Delivered is final.
    let reply = app
        .track(shipment_id, &driver, json!({"status": "returned"}))
        .await;
    reply.expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_see_and_report_only_their_own_shipments() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let stranger = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let (mine, theirs) = (app.user(Role::Driver), app.user(Role::Driver));
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1), ("SKU-B", 1)])
        .await;
    let my_shipment = id_of(
        &app.assigned_shipment(&staff, &mine, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let their_shipment = id_of(
        &app.assigned_shipment(&staff, &theirs, id, warehouse, &[("SKU-B", 1)], false)
            .await,
    );

    let reply = app.get("/api/v1/shipments", Some(&mine)).await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), [my_shipment]);
    let reply = app
        .get(
            &format!("/api/v1/shipments?driver_id={}", theirs.id),
            Some(&mine),
        )
        .await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), Vec::<Uuid>::new());
    for path in [
        format!("/api/v1/shipments/{their_shipment}"),
        format!("/api/v1/shipments/{their_shipment}/tracking-events"),
    ] {
        app.get(&path, Some(&mine))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    app.track(their_shipment, &mine, json!({"status": "picked_up"}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    let proof = json!({"type": "scan", "receiver_name": "Ada", "reference": "scan/9"});
    app.post(
        &format!("/api/v1/shipments/{their_shipment}/proof"),
        Some(&mine),
        &proof,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.get(&format!("/api/v1/shipments/{my_shipment}"), Some(&mine))
        .await
        .expect(StatusCode::OK);
    // Drivers do not assign or cancel.
    app.post(
        &format!("/api/v1/shipments/{my_shipment}/assign"),
        Some(&mine),
        &json!({"driver_id": mine.id}),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.post(
        &format!("/api/v1/shipments/{my_shipment}/cancel"),
        Some(&mine),
        &json!({}),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    // Staff see everything and filter.
    let reply = app.get("/api/v1/shipments", Some(&staff)).await;
    assert_eq!(
        ids(reply.expect(StatusCode::OK)),
        [my_shipment, their_shipment]
    );
    let reply = app
        .get(
            &format!("/api/v1/shipments?driver_id={}", theirs.id),
            Some(&staff),
        )
        .await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), [their_shipment]);
    let reply = app
        .get(
            &format!("/api/v1/shipments?order_id={id}&status=assigned"),
            Some(&staff),
        )
        .await;
    assert_eq!(
        ids(reply.expect(StatusCode::OK)),
        [my_shipment, their_shipment]
    );
    let reply = app
        .get("/api/v1/shipments?status=picked_up", Some(&staff))
        .await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), Vec::<Uuid>::new());
    app.get("/api/v1/shipments?status=lost", Some(&staff))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");

    // The order's owner reads its shipments but not their tracking events; others see nothing.
    app.get(&format!("/api/v1/shipments/{my_shipment}"), Some(&customer))
        .await
        .expect(StatusCode::OK);
    app.get(&format!("/api/v1/shipments/{my_shipment}"), Some(&stranger))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.get(
        &format!("/api/v1/shipments/{my_shipment}/tracking-events"),
        Some(&customer),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.track(my_shipment, &customer, json!({"status": "picked_up"}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    let reply = app.get("/api/v1/shipments", Some(&customer)).await;
    assert_eq!(
        ids(reply.expect(StatusCode::OK)),
        [my_shipment, their_shipment]
    );
    let reply = app.get("/api/v1/shipments", Some(&stranger)).await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), Vec::<Uuid>::new());

    // Reassigned before pickup, the shipment moves to the other driver's list.
    let reply = app
        .post(
            &format!("/api/v1/shipments/{my_shipment}/assign"),
            Some(&staff),
            &json!({"driver_id": theirs.id}),
        )
        .await;
    assert_eq!(
        reply.expect(StatusCode::OK)["driver_id"],
        theirs.id.to_string()
    );
    let reply = app.get("/api/v1/shipments", Some(&theirs)).await;
    assert_eq!(
        ids(reply.expect(StatusCode::OK)),
        [my_shipment, their_shipment]
    );
    app.get(&format!("/api/v1/shipments/{my_shipment}"), Some(&mine))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_list_only_shipments_of_their_own_orders_whatever_they_filter_by() {
    let app = spawn_app().await;
    let (ada, bob) = (app.user(Role::Customer), app.user(Role::Customer));
    let staff = app.user(Role::Dispatcher);
    let (ada_driver, bob_driver) = (app.user(Role::Driver), app.user(Role::Driver));
    let warehouse = Uuid::now_v7();
    let ada_order = app.confirmed_order(&ada, warehouse, &[("SKU-A", 1)]).await;
    let bob_order = app.confirmed_order(&bob, warehouse, &[("SKU-B", 1)]).await;
    let ada_shipment = id_of(
        &app.assigned_shipment(
            &staff,
            &ada_driver,
            ada_order,
            warehouse,
            &[("SKU-A", 1)],
            false,
        )
        .await,
    );
    let bob_shipment = id_of(
        &app.assigned_shipment(
            &staff,
            &bob_driver,
            bob_order,
            warehouse,
            &[("SKU-B", 1)],
            false,
        )
        .await,
    );

    let reply = app.get("/api/v1/shipments", Some(&ada)).await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), [ada_shipment]);
    let reply = app
        .get(
            &format!("/api/v1/shipments?customer_id={}", ada.id),
            Some(&ada),
        )
        .await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), [ada_shipment]);
    // No filter widens the list to someone else's shipments.
    for widened in [
        format!("customer_id={}", bob.id),
        format!("customer_id={},{}", ada.id, bob.id),
        format!("order_id={bob_order}"),
        format!("driver_id={}", bob_driver.id),
        format!(
            "driver_id={},{}&order_id={ada_order},{bob_order}",
            ada_driver.id, bob_driver.id
        ),
    ] {
        let reply = app
            .get(&format!("/api/v1/shipments?{widened}"), Some(&ada))
            .await;
        let found = ids(reply.expect(StatusCode::OK));
        assert!(!found.contains(&bob_shipment), "{widened}: {found:?}");
    }
    app.get("/api/v1/shipments?customer_id=someone", Some(&ada))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");

    // Staff filter by customer.
    let reply = app
        .get(
            &format!("/api/v1/shipments?customer_id={}", bob.id),
            Some(&staff),
        )
        .await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), [bob_shipment]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_shipment_leaves_the_order_shipped_and_counts_the_return() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;
    let shipment_id = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 2)], true)
            .await,
    );
    app.drive(
        shipment_id,
        &driver,
        &["picked_up", "in_transit", "out_for_delivery"],
    )
    .await;
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "delivery_failed", "reason": "refused"}),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "returned", "reason": "refused"}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], true);

    let order = app.order(id, &customer).await;
    assert_eq!(order["status"], "shipped");
    assert_eq!(order["lines"][0]["quantity_returned"], 2);
    assert_eq!(order["lines"][0]["quantity_delivered"], 0);
    let returned: Vec<_> = app
        .outbox(EventType::ShipmentStatusChanged, id)
        .await
        .into_iter()
        .filter(|e| e.data["to"] == "returned")
        .collect();
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].data["reason"], "refused");
    assert_eq!(
        returned[0].data["lines"],
        json!([{"sku": "SKU-A", "quantity": 2}])
    );
    // Returned is final.
    app.track(shipment_id, &driver, json!({"status": "out_for_delivery"}))
        .await
        .expect_problem(StatusCode::CONFLICT, "INVALID_TRANSITION");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_to_an_order_or_a_shipment_moves_its_etag() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 3), ("SKU-B", 1)])
        .await;
    let first = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], true)
            .await,
    );
    let second = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let etag = |path: String| {
        let (app, customer) = (&app, &customer);
        async move {
            let reply = app.get(&path, Some(customer)).await;
            reply.expect(StatusCode::OK);
            (
                reply.header("etag").unwrap_or_default().to_owned(),
                reply.body,
            )
        }
    };
    let order_path = format!("/api/v1/orders/{id}");

    app.drive(first, &driver, &["picked_up"]).await;
    let (before, order) = etag(order_path.clone()).await;
    assert_eq!(order["status"], "partially_shipped");

    // Another pickup leaves the status as it is but changes the lines.
    app.drive(second, &driver, &["picked_up"]).await;
    let (after, order) = etag(order_path.clone()).await;
    assert_eq!(order["status"], "partially_shipped");
    assert_eq!(order["lines"][0]["quantity_shipped"], 2);
    assert_ne!(before, after, "the order changed but kept its ETag");

    // A proof changes the shipment.
    app.drive(first, &driver, &["in_transit", "out_for_delivery"])
        .await;
    let shipment_path = format!("/api/v1/shipments/{first}");
    let (before, _) = etag(shipment_path.clone()).await;
    let proof = json!({"type": "photo", "receiver_name": "Ada", "reference": "img/1"});
    app.post(&format!("{shipment_path}/proof"), Some(&driver), &proof)
        .await
        .expect(StatusCode::CREATED);
    let (after, shipment) = etag(shipment_path.clone()).await;
    assert_eq!(shipment["proof"]["type"], "photo");
    assert_ne!(before, after, "the shipment changed but kept its ETag");

    // A delivery that leaves the order partially shipped still changes its lines.
    let (before, _) = etag(order_path.clone()).await;
    app.drive(first, &driver, &["delivered"]).await;
    let (after, order) = etag(order_path).await;
    assert_eq!(order["status"], "partially_shipped");
    assert_eq!(order["lines"][0]["quantity_delivered"], 1);
    assert_ne!(before, after, "the order changed but kept its ETag");
}
