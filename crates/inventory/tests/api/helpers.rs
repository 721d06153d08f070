//! A running inventory service on a fresh database, with a token per role and shortcuts for the setup most
//! tests share.

use platform::auth::{JwtKeys, Role};
use platform::config::Settings;
use platform::db::Db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestDb, TestServer};
use uuid::Uuid;

pub struct TestApp {
    pub server: TestServer,
    pub db: Db,
    pub cache: cache::Cache,
    pub messaging: messaging::Messaging,
    pub config: inventory::Config,
    pub client: reqwest::Client,
    /// Stops the relay, sweeper and saga consumer of [`spawn_app_with_events`] (fired on drop).
    pub events: tokio_util::sync::CancellationToken,
    keys: JwtKeys,
    // Dropped last: it drops the database.
    _test_db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A service with extra environment settings (e.g. `LOGICORE_INVENTORY__SWEEPER_INTERVAL_MS`). The expiry
/// sweeper, the outbox relay and the saga consumer do not run unless a test starts them.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    spawn(env, false).await
}

/// A service whose background tasks run too: the outbox relay, the expiry sweeper and the saga consumer,
/// subscribed before this returns.
pub async fn spawn_app_with_events(env: &[(&str, &str)]) -> TestApp {
    spawn(env, true).await
}

async fn spawn(env: &[(&str, &str)], events: bool) -> TestApp {
    let test_db = TestDb::new();
    let mut vars = vec![("DATABASE_URL", test_db.url.as_str())];
    vars.extend_from_slice(env);
    let settings: Settings = testkit::settings_with(
        &vars,
        &[platform::config::SectionSpec::of::<
            inventory::InventorySettings,
        >()],
    );
    let config = inventory::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    let app = inventory::build(&config)
        .await
        .unwrap_or_else(|e| panic!("build: {e:?}"));
    let db = app.db.clone();
    let cache = app.cache.clone();
    let messaging = app.messaging.clone();
    let token = tokio_util::sync::CancellationToken::new();
    if events {
        // Detached: the tasks stop when the token fires, on drop.
        drop(app.spawn_background(token.clone()).await);
    }
    let server = TestServer::spawn(app.router).await;
    TestApp {
        server,
        db,
        cache,
        messaging,
        keys: JwtKeys::new(&settings.auth),
        config,
        client: testkit::client(),
        events: token,
        _test_db: test_db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.events.cancel();
    }
}

pub fn ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e:?}"))
}

impl TestApp {
    pub fn token(&self, role: Role) -> String {
        let email = format!("{role}@example.com");
        ok(self.keys.issue(Uuid::now_v7(), &email, role)).0
    }

    /// Sends a request as `role` (`None`: no token) and returns status and JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        role: Option<Role>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.server.url(path));
        if let Some(role) = role {
            request = request.bearer_auth(self.token(role));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = ok(request.send().await);
        let status = response.status();
        let text = ok(response.text().await);
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, role: Role) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(role), None).await
    }

    pub async fn post(&self, path: &str, role: Role, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(role), Some(body)).await
    }

    pub async fn patch(&self, path: &str, role: Role, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(role), Some(body)).await
    }

    /// Creates a warehouse as admin and returns its id.
    pub async fn warehouse(&self, code: &str, priority: i64) -> Uuid {
        let (status, body) = self
            .post(
                "/api/v1/inventory/warehouses",
                Role::Admin,
                json!({"code": code, "name": format!("Warehouse {code}"), "address": "1 Dock Road", "priority": priority}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        id_of(&body)
    }

    /// Creates a product as admin and returns its id.
    pub async fn product(&self, sku: &str, extra: Value) -> Uuid {
        let mut body = json!({"sku": sku, "name": format!("Product {sku}")});
        if let (Some(target), Value::Object(extra)) = (body.as_object_mut(), extra) {
            target.extend(extra);
        }
        let (status, body) = self
            .post("/api/v1/inventory/products", Role::Admin, body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        id_of(&body)
    }

    /// Receives stock (a `receipt` adjustment).
    pub async fn receive(&self, sku: &str, warehouse: Uuid, quantity: i64) {
        let (status, body) = self
            .post(
                "/api/v1/inventory/adjustments",
                Role::Manager,
                json!({"sku": sku, "warehouse_id": warehouse, "delta": quantity, "reason": "receipt"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub async fn reserve(&self, order: Uuid, lines: Value) -> (StatusCode, Value) {
        self.post(
            "/api/v1/inventory/reservations",
            Role::Dispatcher,
            json!({"order_id": order, "lines": lines}),
        )
        .await
    }

    /// The sum of the series of `family` whose labels include `label` on the service's `/metrics` now.
    pub async fn metric(&self, family: &str, label: &str) -> f64 {
        let page = testkit::metrics(&self.server.url("/metrics")).await;
        testkit::metric_sum(&page, family, label)
    }

    /// Waits until [`Self::metric`] is `expected`: what a background task counts (after its commit, or at
    /// its next round) shows a moment after the change itself.
    pub async fn metric_reaches(&self, family: &str, label: &str, expected: f64) {
        let what = format!("{family}{{{label}}} to be {expected}");
        testkit::eventually(&what, std::time::Duration::from_secs(20), || async {
            (self.metric(family, label).await == expected).then_some(())
        })
        .await;
    }

    /// Availability of a product as `(on_hand, reserved, available)` totals.
    pub async fn totals(&self, product: Uuid) -> (i64, i64, i64) {
        let path = format!("/api/v1/inventory/products/{product}/availability");
        let (status, body) = self.get(&path, Role::Customer).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let totals = &body["totals"];
        (
            totals["on_hand"].as_i64().unwrap_or(-1),
            totals["reserved"].as_i64().unwrap_or(-1),
            totals["available"].as_i64().unwrap_or(-1),
        )
    }

    /// Checks the ledger invariant over every stock row: on_hand equals the sum of its movements and the
    /// last movement's resulting_on_hand; reserved equals what live reservations still hold.
    pub async fn assert_ledger_explains_stock(&self) {
        let broken: Vec<(Uuid, Uuid, i32, i64, i32, i64)> = ok(sqlx::query_as(
            "SELECT s.product_id, s.warehouse_id, s.on_hand, \
               COALESCE((SELECT sum(delta) FROM movements m \
                 WHERE m.product_id = s.product_id AND m.warehouse_id = s.warehouse_id), 0)::bigint, \
               s.reserved, \
               COALESCE((SELECT sum(l.quantity - l.consumed) FROM reservation_lines l \
                 JOIN reservations r ON r.id = l.reservation_id \
                 WHERE r.status IN ('held', 'committed') \
                   AND l.product_id = s.product_id AND l.warehouse_id = s.warehouse_id), 0)::bigint \
             FROM stock_levels s",
        )
        .fetch_all(self.db.pool())
        .await)
        .into_iter()
        .filter(|(_, _, on_hand, sum, reserved, held)| {
            i64::from(*on_hand) != *sum || i64::from(*reserved) != *held
        })
        .collect();
        assert!(
            broken.is_empty(),
            "stock rows the ledger does not explain: {broken:?}"
        );
        let last_mismatch: i64 = ok(sqlx::query_scalar(
            "SELECT count(*) FROM stock_levels s JOIN LATERAL ( \
               SELECT resulting_on_hand FROM movements m \
               WHERE m.product_id = s.product_id AND m.warehouse_id = s.warehouse_id \
               ORDER BY m.seq DESC LIMIT 1) last ON true \
             WHERE last.resulting_on_hand <> s.on_hand",
        )
        .fetch_one(self.db.pool())
        .await);
        assert_eq!(
            last_mismatch, 0,
            "a last movement's resulting_on_hand differs from on_hand"
        );
    }
}

pub fn id_of(body: &Value) -> Uuid {
    ok(body["id"].as_str().unwrap_or_default().parse::<Uuid>())
}

pub fn codes(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
