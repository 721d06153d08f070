//! Every 201 names what it created in `Location`, and a replay under the same `Idempotency-Key` names the
//! same resource.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, User, id_of, order_body, spawn_app};

/// Posts `body` to `path` as `user` under `key` twice: the original and its replay.
async fn twice(app: &TestApp, path: &str, user: &User, key: &str, body: &Value) -> (Reply, Reply) {
    let mut replies = Vec::new();
    for _ in 0..2 {
        let request = app
            .request(Method::POST, path, Some(user))
            .header("idempotency-key", key)
            .json(body);
        replies.push(app.send(request).await);
    }
    let replay = replies.pop().unwrap_or_else(|| panic!("two replies"));
    let original = replies.pop().unwrap_or_else(|| panic!("two replies"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{path}");
    (original, replay)
}

/// Asserts both answers are 201 with `Location: expected`, and that it can be read back by `reader`.
async fn assert_located(
    app: &TestApp,
    (original, replay): &(Reply, Reply),
    expected: &str,
    reader: &User,
) {
    for reply in [original, replay] {
        reply.expect(StatusCode::CREATED);
        assert_eq!(reply.header("location"), Some(expected), "{}", reply.body);
    }
    app.get(expected, Some(reader)).await.expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_names_its_resource_in_location_and_a_replay_names_the_same() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);

    let orders = twice(
        &app,
        "/api/v1/orders",
        &customer,
        "o-1",
        &order_body(&[("SKU-A", 1, 100)]),
    )
    .await;
    let order_id = id_of(&orders.0.body);
    assert_located(
        &app,
        &orders,
        &format!("/api/v1/orders/{order_id}"),
        &customer,
    )
    .await;

    let warehouse = Uuid::now_v7();
    app.confirm(order_id, &[("SKU-A", warehouse, 1)]).await;
    app.wait_for_status(order_id, "confirmed").await;
    let body = json!({"warehouse_id": warehouse, "lines": [{"sku": "SKU-A", "quantity": 1}], "proof_required": true});
    let shipments = twice(
        &app,
        &format!("/api/v1/orders/{order_id}/shipments"),
        &staff,
        "s-1",
        &body,
    )
    .await;
    let shipment = id_of(&shipments.0.body);
    let shipment_path = format!("/api/v1/shipments/{shipment}");
    assert_located(&app, &shipments, &shipment_path, &staff).await;

    app.post(
        &format!("{shipment_path}/assign"),
        Some(&staff),
        &json!({"driver_id": driver.id}),
    )
    .await
    .expect(StatusCode::OK);
    let events_path = format!("{shipment_path}/tracking-events");
    for (index, status) in ["picked_up", "in_transit", "out_for_delivery"]
        .iter()
        .enumerate()
    {
        let events = twice(
            &app,
            &events_path,
            &driver,
            &format!("t-{index}"),
            &json!({"status": status}),
        )
        .await;
        assert_located(&app, &events, &events_path, &driver).await;
    }

    let proof = json!({"type": "signature", "receiver_name": "Ada", "reference": "sig/1"});
    let proofs = twice(
        &app,
        &format!("{shipment_path}/proof"),
        &driver,
        "p-1",
        &proof,
    )
    .await;
    assert_located(&app, &proofs, &shipment_path, &driver).await;

    // Without a key, too; and an action that creates nothing has no `Location`.
    let fresh = app
        .post(
            "/api/v1/orders",
            Some(&customer),
            &order_body(&[("SKU-A", 1, 100)]),
        )
        .await;
    let fresh_id = id_of(fresh.expect(StatusCode::CREATED));
    assert_eq!(
        fresh.header("location"),
        Some(format!("/api/v1/orders/{fresh_id}").as_str())
    );
    let cancelled = app
        .post(
            &format!("/api/v1/orders/{fresh_id}/cancel"),
            Some(&customer),
            &json!({"reason": "changed my mind"}),
        )
        .await;
    cancelled.expect(StatusCode::OK);
    assert_eq!(cancelled.header("location"), None);
}
