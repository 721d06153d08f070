use std::time::Duration;

use platform::auth::{JwtKeys, Role};
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestServer;
use uuid::Uuid;

use crate::helpers::{id_of, ok, spawn_app};

#[tokio::test]
async fn an_expired_hold_stops_counting_at_once_even_before_any_sweep() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 10).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/reservations",
            Role::Dispatcher,
            json!({"order_id": Uuid::now_v7(), "lines": [{"sku": "A-1", "quantity": 8}], "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    assert_eq!(app.totals(product).await, (10, 8, 2));

    // No sweeper runs in this app: the hold lapses, availability ignores it, its row still says held.
    testkit::eventually(
        "the lapsed hold to stop counting",
        Duration::from_secs(10),
        || async { (app.totals(product).await == (10, 0, 10)).then_some(()) },
    )
    .await;
    let (_, still) = app
        .get(&format!("/api/v1/inventory/reservations/{id}"), Role::Admin)
        .await;
    assert_eq!(still["status"], "held");

    // A new reservation may use the stock at once; the lapsed hold is expired on the way.
    let (status, body) = app
        .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 9}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, old) = app
        .get(&format!("/api/v1/inventory/reservations/{id}"), Role::Admin)
        .await;
    assert_eq!(old["status"], "expired");
    assert_eq!(app.totals(product).await, (10, 9, 1));
    app.assert_ledger_explains_stock().await;
}

#[tokio::test]
async fn the_sweeper_of_a_running_service_expires_lapsed_holds() {
    let test_db = testkit::TestDb::new();
    let settings = testkit::settings_with(
        &[
            ("DATABASE_URL", &test_db.url),
            ("LOGICORE_INVENTORY__SWEEPER_INTERVAL_MS", "50"),
        ],
        &[platform::config::SectionSpec::of::<
            inventory::InventorySettings,
        >()],
    );
    let config = inventory::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    let listener = testkit::bind().await;
    let address = ok(listener.local_addr());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { ok(inventory::run(config, listener, shutdown).await) }
    });
    let server = TestServer::from_parts(address, shutdown, handle);
    let client = testkit::client();
    let (token, _) = ok(JwtKeys::new(&settings.auth).issue(Uuid::now_v7(), "a@b.c", Role::Admin));
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(server.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    testkit::eventually(
        "the service to be ready",
        Duration::from_secs(10),
        || async {
            let response = client.get(server.url("/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
    let warehouse = testkit::json(ok(post(
        "/api/v1/inventory/warehouses",
        json!({"code": "MAIN", "name": "Main", "address": ""}),
    )
    .await))
    .await;
    ok(post(
        "/api/v1/inventory/products",
        json!({"sku": "A-1", "name": "A"}),
    )
    .await);
    ok(post(
        "/api/v1/inventory/adjustments",
        json!({"sku": "A-1", "warehouse_id": warehouse["id"], "delta": 5, "reason": "receipt"}),
    )
    .await);
    let reservation = testkit::json(ok(post(
        "/api/v1/inventory/reservations",
        json!({"order_id": Uuid::now_v7(), "lines": [{"sku": "A-1", "quantity": 5}], "ttl_seconds": 1}),
    )
    .await))
    .await;
    let path = format!("/api/v1/inventory/reservations/{}", id_of(&reservation));
    let expired = testkit::eventually(
        "the sweeper to expire the hold",
        Duration::from_secs(10),
        || async {
            let response = client
                .get(server.url(&path))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            let body = testkit::json(response).await;
            (body["status"] == "expired").then_some(body)
        },
    )
    .await;
    assert_eq!(expired["lines"][0]["quantity"], 5);
    let levels = testkit::json(ok(client
        .get(server.url("/api/v1/inventory/stock-levels"))
        .bearer_auth(&token)
        .send()
        .await))
    .await;
    assert_eq!(levels["data"][0]["reserved"], 0);
    assert_eq!(levels["data"][0]["available"], 5);
    server.stop().await;
}

#[tokio::test]
async fn several_sweepers_at_once_expire_each_hold_exactly_once() {
    let app = spawn_app().await;
    let warehouse = app.warehouse("MAIN", 1).await;
    let product = app.product("A-1", json!({})).await;
    app.receive("A-1", warehouse, 100).await;
    for _ in 0..40 {
        let (status, _) = app
            .reserve(Uuid::now_v7(), json!([{"sku": "A-1", "quantity": 2}]))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    ok(
        sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second'")
            .execute(app.db.pool())
            .await,
    );
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let (db, cache, messaging) = (app.db.clone(), app.cache.clone(), app.messaging.clone());
            tokio::spawn(async move { inventory::sweep_expired(&db, &cache, &messaging, 3).await })
        })
        .collect();
    let mut swept = 0;
    for sweep in sweeps {
        swept += ok(ok(sweep.await));
    }
    assert_eq!(swept, 40);
    assert_eq!(app.totals(product).await, (100, 0, 100));
    app.assert_ledger_explains_stock().await;
}
