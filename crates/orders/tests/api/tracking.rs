//! Tracking events: what they must carry, and which ones move a shipment (late ones, repeats and
//! replays do not).

use chrono::{Duration, Utc};
use messaging::EventType;
use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{field_codes, id_of, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_repeated_tracking_events_are_stored_but_move_nothing() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment_id = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    app.drive(shipment_id, &driver, &["picked_up", "in_transit"])
        .await;

    let an_hour_ago = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let late = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "out_for_delivery", "occurred_at": an_hour_ago}),
        )
        .await;
    let late = late.expect(StatusCode::CREATED).clone();
    assert_eq!(late["applied"], false);
    assert_eq!(late["status"], "out_for_delivery");

    let repeat = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "in_transit", "location": {"lat": 52.0, "lng": 5.0}}),
        )
        .await;
    assert_eq!(repeat.expect(StatusCode::CREATED)["applied"], false);

    let reply = app
        .get(&format!("/api/v1/shipments/{shipment_id}"), Some(&driver))
        .await;
    let shipment = reply.expect(StatusCode::OK);
    assert_eq!(shipment["status"], "in_transit");
    assert_eq!(shipment["version"], 4);

    let reply = app
        .get(
            &format!("/api/v1/shipments/{shipment_id}/tracking-events"),
            Some(&staff),
        )
        .await;
    let events: Vec<(String, bool)> = reply
        .expect(StatusCode::OK)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap_or_default().to_owned(),
                e["applied"] == true,
            )
        })
        .collect();
    // In the order they happened: the late one first.
    assert_eq!(
        events,
        [
            ("out_for_delivery".into(), false),
            ("picked_up".into(), true),
            ("in_transit".into(), true),
            ("in_transit".into(), false),
        ]
    );
    // Neither reached the order or the event stream.
    assert_eq!(app.order(id, &customer).await["status"], "shipped");
    let to_out: usize = app
        .outbox(EventType::ShipmentStatusChanged, id)
        .await
        .iter()
        .filter(|e| e.data["to"] == "out_for_delivery")
        .count();
    assert_eq!(to_out, 0);
    // The real one still applies afterwards.
    app.drive(shipment_id, &driver, &["out_for_delivery"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_event_bodies_are_checked() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment_id = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let tomorrow = (Utc::now() + Duration::days(1)).to_rfc3339();

    let cases = [
        (json!({"status": "delivery_failed"}), ("reason", "REQUIRED")),
        (
            json!({"status": "picked_up", "occurred_at": tomorrow}),
            ("occurred_at", "IN_FUTURE"),
        ),
        (json!({"status": "teleported"}), ("status", "INVALID_VALUE")),
        (json!({"status": "assigned"}), ("status", "INVALID_VALUE")),
        (
            json!({"status": "delivery_failed", "reason": "aliens"}),
            ("reason", "INVALID_VALUE"),
        ),
        (
            json!({"status": "picked_up", "reason": "damaged"}),
            ("reason", "NOT_ALLOWED"),
        ),
        (
            json!({"status": "picked_up", "location": {"lat": 91.0, "lng": 0.0}}),
            ("location.lat", "OUT_OF_RANGE"),
        ),
        (
            json!({"status": "picked_up", "location": {"lat": 0.0, "lng": 181.0}}),
            ("location.lng", "OUT_OF_RANGE"),
        ),
        (
            json!({"status": "picked_up", "location": {"lat": 0.0, "lng": 0.0, "country": "nld"}}),
            ("location.country", "INVALID_FORMAT"),
        ),
    ];
    for (body, (field, code)) in cases {
        let reply = app.track(shipment_id, &driver, body.clone()).await;
        reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
        assert!(
            field_codes(&reply.body).contains(&(field.to_owned(), code.to_owned())),
            "{body}: {}",
            reply.body
        );
    }
    // Nothing was stored and nothing moved.
    let reply = app
        .get(
            &format!("/api/v1/shipments/{shipment_id}/tracking-events"),
            Some(&driver),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK), &json!([]));
    let reply = app
        .get(&format!("/api/v1/shipments/{shipment_id}"), Some(&driver))
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "assigned");
    // A small clock skew is tolerated.
    let soon = (Utc::now() + Duration::seconds(30)).to_rfc3339();
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "picked_up", "occurred_at": soon}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_tracking_event_with_the_same_key_is_stored_once() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment_id = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let path = format!("/api/v1/shipments/{shipment_id}/tracking-events");
    let send = || {
        app.send(
            app.request(reqwest::Method::POST, &path, Some(&driver))
                .header("idempotency-key", "scan-0001")
                .json(&json!({"status": "picked_up", "occurred_at": Utc::now().to_rfc3339()})),
        )
    };
    let body = json!({"status": "picked_up"});
    let first = app
        .send(
            app.request(reqwest::Method::POST, &path, Some(&driver))
                .header("idempotency-key", "scan-0001")
                .json(&body),
        )
        .await;
    first.expect(StatusCode::CREATED);
    let again = app
        .send(
            app.request(reqwest::Method::POST, &path, Some(&driver))
                .header("idempotency-key", "scan-0001")
                .json(&body),
        )
        .await;
    assert_eq!(again.expect(StatusCode::CREATED), &first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    send()
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");

    let reply = app.get(&path, Some(&driver)).await;
    assert_eq!(
        reply.expect(StatusCode::OK).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        app.order(id, &customer).await["lines"][0]["quantity_shipped"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_clock_slightly_ahead_does_not_make_later_events_late() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1), ("SKU-B", 1)])
        .await;
    let ahead = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-A", 1)], false)
            .await,
    );
    let precise = id_of(
        &app.assigned_shipment(&staff, &driver, id, warehouse, &[("SKU-B", 1)], false)
            .await,
    );

    // Within the tolerated skew, so accepted; the status cannot have been reached in the future, though.
    let in_two_minutes = (Utc::now() + Duration::minutes(2)).to_rfc3339();
    let reply = app
        .track(
            ahead,
            &driver,
            json!({"status": "picked_up", "occurred_at": in_two_minutes}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], true);
    let reply = app
        .track(ahead, &staff, json!({"status": "in_transit"}))
        .await;
    assert_eq!(
        reply.expect(StatusCode::CREATED)["applied"],
        true,
        "{}",
        reply.body
    );

    // Two events of one scan share a nanosecond timestamp: neither is late to the other.
    let stamp = format!("{}999Z", Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f"));
    for status in ["picked_up", "in_transit"] {
        let reply = app
            .track(
                precise,
                &driver,
                json!({"status": status, "occurred_at": stamp}),
            )
            .await;
        assert_eq!(
            reply.expect(StatusCode::CREATED)["applied"],
            true,
            "{status}: {}",
            reply.body
        );
    }
}
