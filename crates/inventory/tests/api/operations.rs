use reqwest::StatusCode;

use crate::helpers::{ok, spawn_app};

#[tokio::test]
async fn health_readiness_and_metrics_are_served_next_to_the_api() {
    let app = spawn_app().await;
    for path in ["/health", "/readyz"] {
        let response = ok(app.client.get(app.server.url(path)).send().await);
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let ready = testkit::json(ok(app.client.get(app.server.url("/readyz")).send().await)).await;
    // Messaging is shown but not required: its outage leaves events waiting in the outbox.
    let messaging = &ready["checks"]["messaging"];
    assert_eq!(messaging["status"], "up", "{ready}");
    assert_eq!(messaging["required"], false, "{ready}");
    app.product("A-1", serde_json::json!({})).await;
    let text = ok(ok(app.client.get(app.server.url("/metrics")).send().await)
        .text()
        .await);
    assert!(text.contains("service=\"inventory\""), "{text}");
    assert!(
        text.contains("query=\"inventory.product_insert\""),
        "{text}"
    );
}

#[test]
fn the_openapi_document_describes_every_inventory_route_with_bearer_auth() {
    let spec = ok(serde_json::to_value(inventory::openapi()));
    let paths = spec["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for path in [
        "/api/v1/inventory/warehouses",
        "/api/v1/inventory/warehouses/{id}",
        "/api/v1/inventory/products",
        "/api/v1/inventory/products/{id}",
        "/api/v1/inventory/products/{id}/availability",
        "/api/v1/inventory/stock-levels",
        "/api/v1/inventory/adjustments",
        "/api/v1/inventory/transfers",
        "/api/v1/inventory/movements",
        "/api/v1/inventory/reservations",
        "/api/v1/inventory/reservations/{id}",
        "/api/v1/inventory/reservations/{id}/release",
        "/api/v1/inventory/import",
    ] {
        assert!(
            paths.iter().any(|p| p == path),
            "{path} missing from {paths:?}"
        );
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer_auth"]["scheme"],
        "bearer"
    );
    assert!(spec["components"]["schemas"]["Reservation"].is_object());
}

#[test]
fn inventory_settings_are_validated_with_the_rest_of_the_configuration() {
    let sources = platform::config::ConfigSources {
        file: None,
        config_dir: std::path::PathBuf::from("/nonexistent"),
        env: [
            ("LOGICORE_INVENTORY__RESERVATION_TTL_SECS", "0"),
            ("LOGICORE_INVENTORY__SWEEPER_BATCH", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let section = platform::config::SectionSpec::of::<inventory::InventorySettings>();
    let keys: Vec<String> = match platform::config::load(&sources, &[section]) {
        Ok(_) => panic!("invalid inventory settings were accepted"),
        Err(e) => e.issues.into_iter().map(|i| i.key).collect(),
    };
    assert_eq!(
        keys,
        ["inventory.reservation_ttl_secs", "inventory.sweeper_batch"]
    );

    let settings = testkit::settings_with(
        &[("LOGICORE_INVENTORY__RESERVATION_TTL_SECS", "60")],
        &[section],
    );
    let config = inventory::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.basics.port, 8000);
    assert_eq!(config.reservation_ttl, std::time::Duration::from_secs(60));
}
