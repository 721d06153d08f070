//! `GET /api/v1/track/{tracking_number}`: public, and without personal data.

use platform::auth::Role;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, id_of, ok, spawn_app};

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

/// The tracking page as raw text with its headers, asked for with `accept` (none when `None`).
async fn page(
    app: &TestApp,
    number: &str,
    accept: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = app.request(Method::GET, &format!("/api/v1/track/{number}"), None);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = ok(request.send().await);
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, ok(response.text().await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_tracking_page_as_escaped_html_and_everyone_else_json() {
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
    let number = shipment["tracking_number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.track(
        id_of(&shipment),
        &driver,
        json!({
            "status": "picked_up",
            "description": "left with Jane Doe",
            "location": {"lat": 52.37, "lng": 4.89, "city": "<script>alert('x')</script> & Co", "country": "NL"},
        }),
    )
    .await
    .expect(StatusCode::CREATED);

    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, headers, html) = page(&app, &number, Some(browser)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    assert!(
        header("content-type").starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        header("vary").to_ascii_lowercase().contains("accept"),
        "{headers:?}"
    );
    assert!(
        header("content-security-policy").contains("default-src 'none'"),
        "{headers:?}"
    );
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains(&format!("Shipment {number}")), "{html}");
    assert!(html.contains("<strong>Picked up</strong>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co, NL"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    for secret in [
        "Jane Doe",
        "Ada Lovelace",
        "52.37",
        "4.89",
        &customer.id.to_string(),
        &driver.id.to_string(),
        &order_id.to_string(),
        &warehouse.to_string(),
    ] {
        assert!(
            !html.contains(secret),
            "the HTML page shows {secret}: {html}"
        );
    }

    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("text/html;q=0.5, application/json"),
    ] {
        let (status, headers, text) = page(&app, &number, accept).await;
        assert_eq!(status, StatusCode::OK, "{accept:?}: {text}");
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"), "{accept:?}");
        assert!(headers.get("vary").is_some(), "{accept:?}: {headers:?}");
        let body: serde_json::Value = ok(serde_json::from_str(&text));
        assert_eq!(body["status"], "picked_up", "{accept:?}");
    }

    // An unknown number is a problem+json 404 whatever was asked for.
    let (status, headers, _) = page(&app, "LC0000000000000000", Some(browser)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}
