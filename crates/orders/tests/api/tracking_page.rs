//! `GET /api/v1/track/{tracking_number}`: public, and without personal data.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{id_of, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_tracking_page_shows_status_and_events_without_personal_data() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let warehouse = Uuid::now_v7();
    let order_id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 1)])
        .await;
    let shipment = app
        .assigned_shipment(&staff, &driver, order_id, warehouse, &[("SKU-A", 1)], false)
        .await;
    let shipment_id = id_of(&shipment);
    let number = shipment["tracking_number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({
                "status": "picked_up",
                "description": "collected from Jane Doe at the back door",
                "location": {"lat": 52.370216, "lng": 4.895168, "city": "Amsterdam", "country": "NL"},
            }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    // A late event is not part of the public story.
    let reply = app
        .track(
            shipment_id,
            &driver,
            json!({"status": "in_transit", "occurred_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::CREATED)["applied"], false);

    let reply = app.get(&format!("/api/v1/track/{number}"), None).await;
    let page = reply.expect(StatusCode::OK).clone();
    assert_eq!(page["tracking_number"], number);
    assert_eq!(page["status"], "picked_up");
    let events = page["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["status"], "picked_up");
    assert_eq!(events[0]["city"], "Amsterdam");
    assert_eq!(events[0]["country"], "NL");
    let text = page.to_string();
    for secret in [
        "Ada Lovelace",
        "Analytical Engine",
        "1011 AB",
        "Jane Doe",
        "52.37",
        "4.89",
        "\"lat\"",
        "\"lng\"",
        &customer.id.to_string(),
        &driver.id.to_string(),
        &staff.id.to_string(),
        &order_id.to_string(),
        &shipment_id.to_string(),
        &warehouse.to_string(),
    ] {
        assert!(
            !text.contains(secret),
            "the tracking page shows {secret}: {text}"
        );
    }

    // Case does not matter; unknown numbers are 404.
    let reply = app
        .get(
            &format!("/api/v1/track/{}", number.to_ascii_lowercase()),
            None,
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["status"], "picked_up");
    app.get("/api/v1/track/LC0000000000000000", None)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
}
