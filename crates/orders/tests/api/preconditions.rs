//! `If-Match` with the `ETag` (the version) a change was read at.

use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{id_of, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_with_a_stale_if_match_is_refused_and_with_the_current_etag_applied() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let id = id_of(&app.order_for(&customer, &[("SKU-A", 1, 100)]).await);
    app.confirm(id, &[("SKU-A", Uuid::now_v7(), 1)]).await;
    let path = format!("/api/v1/orders/{id}/cancel");
    let cancel = |if_match: &str| {
        app.send(
            app.request(Method::POST, &path, Some(&customer))
                .header("if-match", if_match)
                .json(&json!({"reason": "found it cheaper"})),
        )
    };

    let stale = cancel("\"1\"").await;
    stale.expect_problem(StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED");
    assert_eq!(stale.body["current_version"], 2);
    let read = app
        .get(&format!("/api/v1/orders/{id}"), Some(&customer))
        .await;
    assert_eq!(read.expect(StatusCode::OK)["status"], "confirmed");
    assert_eq!(read.header("etag"), Some("\"2\""));

    let current = cancel(read.header("etag").unwrap_or_default()).await;
    let order = current.expect(StatusCode::OK);
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["version"], 3);
    assert_eq!(current.header("etag"), Some("\"3\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipment_changes_honour_if_match_too() {
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
    let shipment_id = id_of(&shipment);
    assert_eq!(shipment["version"], 2);

    let request = app
        .request(
            Method::POST,
            &format!("/api/v1/shipments/{shipment_id}/tracking-events"),
            Some(&driver),
        )
        .header("if-match", "\"1\"")
        .json(&json!({"status": "picked_up"}));
    app.send(request)
        .await
        .expect_problem(StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED");

    let request = app
        .request(
            Method::POST,
            &format!("/api/v1/shipments/{shipment_id}/tracking-events"),
            Some(&driver),
        )
        .header("if-match", "\"2\"")
        .json(&json!({"status": "picked_up"}));
    let reply = app.send(request).await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], true);
}
