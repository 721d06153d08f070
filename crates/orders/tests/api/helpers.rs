//! A running orders service on a fresh database with its background tasks (outbox relay, `orders.saga`
//! consumer, pending-order sweeper), callers of every role, and a stand-in for the inventory service that
//! answers the saga from its own outbox on the same database.

use std::time::Duration;

use messaging::events::{
    InventoryReleased, InventoryReservationFailed, InventoryReserved, ReservedLine, ShortLine,
};
use messaging::{Envelope, EventPayload, EventType, Messaging};
use platform::auth::{JwtKeys, Role};
use platform::db::Db;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use testkit::{TestDb, TestServer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long anything asynchronous (relay, consumer, sweeper) may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e:?}"))
}

/// Someone calling the API: the JWT's `sub` and the token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// What came back: status, headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    /// Asserts a problem with this status and `code`.
    #[track_caller]
    pub fn expect_problem(&self, status: StatusCode, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status.as_u16(), "{}", self.body);
        &self.body
    }

    pub fn id(&self) -> Uuid {
        id_of(&self.body)
    }
}

pub struct TestApp {
    pub server: TestServer,
    /// The orders service's pool (search_path `orders`).
    pub db: Db,
    pub client: reqwest::Client,
    keys: JwtKeys,
    /// The stand-in inventory service's event backbone, on schema `fake_inventory`.
    inventory: Messaging,
    inventory_db: Db,
    background: CancellationToken,
    // Dropped last: it drops the database.
    _test_db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// The service with extra settings (e.g. `LOGICORE_ORDERS__PENDING_TTL_SECS`), its background tasks
/// running, and the stand-in inventory's relay running.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let test_db = TestDb::new();
    let exchange = format!("lc_test_{}", Uuid::new_v4().simple());
    let mut vars = vec![
        ("DATABASE_URL", test_db.url.as_str()),
        ("LOGICORE_MESSAGING__EXCHANGE", exchange.as_str()),
        ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
        ("LOGICORE_MESSAGING__RETRY_DELAY_MS", "200"),
    ];
    vars.extend_from_slice(env);
    let settings = testkit::settings_with(
        &vars,
        &[platform::config::SectionSpec::of::<orders::OrdersSettings>()],
    );
    let app = ok(orders::build(
        &orders::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}")),
    )
    .await);
    let background = CancellationToken::new();
    // Detached: the tasks stop when the token fires, on drop.
    drop(app.spawn_background(background.clone()).await);
    let mut registry = platform::metrics::registry("fake_inventory");
    let inventory_db = ok(Db::connect(&settings.database, "fake_inventory", &mut registry).await);
    let inventory = ok(Messaging::start(
        &settings.messaging,
        &inventory_db,
        "inventory",
        &mut registry,
    )
    .await);
    drop(inventory.relay().spawn(background.clone()));
    let server = TestServer::spawn(app.router.clone()).await;
    TestApp {
        server,
        db: app.db.clone(),
        client: testkit::client(),
        keys: JwtKeys::new(&settings.auth),
        inventory,
        inventory_db,
        background,
        _test_db: test_db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.background.cancel();
    }
}

/// An order body with `lines` of (sku, quantity, unit price).
pub fn order_body(lines: &[(&str, i64, i64)]) -> Value {
    json!({
        "lines": lines
            .iter()
            .map(|(sku, quantity, price)| json!({"sku": sku, "quantity": quantity, "unit_price": price}))
            .collect::<Vec<_>>(),
        "currency": "EUR",
        "shipping_address": address(),
    })
}

pub fn address() -> Value {
    json!({
        "name": "Ada Lovelace",
        "street": "12 Analytical Engine Lane",
        "city": "Amsterdam",
        "postal_code": "1011 AB",
        "country": "NL",
    })
}

pub fn id_of(body: &Value) -> Uuid {
    ok(body["id"].as_str().unwrap_or_default().parse::<Uuid>())
}

/// The (field, code) pairs of a validation problem.
pub fn field_codes(body: &Value) -> Vec<(String, String)> {
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

/// The ids of a list page's `data`.
pub fn ids(page: &Value) -> Vec<Uuid> {
    page["data"]
        .as_array()
        .map(|rows| rows.iter().map(id_of).collect())
        .unwrap_or_default()
}

impl TestApp {
    pub fn user(&self, role: Role) -> User {
        let id = Uuid::now_v7();
        let email = format!("{role}-{}@example.com", id.simple());
        User {
            id,
            token: ok(self.keys.issue(id, &email, role)).0,
        }
    }

    pub fn request(&self, method: Method, path: &str, user: Option<&User>) -> RequestBuilder {
        let request = self.client.request(method, self.server.url(path));
        match user {
            Some(user) => request.bearer_auth(&user.token),
            None => request,
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let response = ok(request.send().await);
        let status = response.status();
        let headers = response.headers().clone();
        let text = ok(response.text().await);
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, user: Option<&User>) -> Reply {
        self.send(self.request(Method::GET, path, user)).await
    }

    pub async fn post(&self, path: &str, user: Option<&User>, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path, user).json(body))
            .await
    }

    /// Creates an order for `customer` (as that customer) and returns its body.
    pub async fn order_for(&self, customer: &User, lines: &[(&str, i64, i64)]) -> Value {
        let reply = self
            .post("/api/v1/orders", Some(customer), &order_body(lines))
            .await;
        reply.expect(StatusCode::CREATED).clone()
    }

    pub async fn order(&self, id: Uuid, user: &User) -> Value {
        let reply = self.get(&format!("/api/v1/orders/{id}"), Some(user)).await;
        reply.expect(StatusCode::OK).clone()
    }

    /// Polls the order (as staff) until it has `status`; returns it.
    pub async fn wait_for_status(&self, id: Uuid, status: &str) -> Value {
        let staff = self.user(Role::Admin);
        testkit::eventually(&format!("order {id} to become {status}"), DEADLINE, || {
            let staff = &staff;
            async move {
                let order = self.order(id, staff).await;
                (order["status"] == status).then_some(order)
            }
        })
        .await
    }

    /// Records an event from the stand-in inventory service; its relay delivers it.
    pub async fn inventory_says<P: EventPayload>(&self, order_id: Uuid, payload: &P) -> Envelope {
        let envelope = ok(self.inventory.event(P::TYPE, order_id, payload));
        self.redeliver(&envelope).await;
        envelope
    }

    /// Records the very same envelope (same id) again: a redelivery.
    pub async fn redeliver(&self, envelope: &Envelope) {
        let mut connection = ok(self.inventory_db.acquire().await);
        let mut tx = ok(sqlx::Connection::begin(&mut *connection).await);
        ok(self.inventory.publish_in_tx(&mut tx, envelope).await);
        ok(tx.commit().await);
    }

    /// Waits until the `orders.saga` consumer has applied (committed) `envelope`.
    pub async fn handled(&self, envelope: &Envelope) {
        let db = &self.db;
        testkit::eventually("the saga to handle the event", DEADLINE, || async {
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM orders.inbox WHERE consumer_group = 'orders.saga' \
                 AND event_id = $1)",
            )
            .bind(envelope.id)
            .fetch_one(db.pool())
            .await
            .ok()?;
            done.then_some(())
        })
        .await;
    }

    /// Plays inventory holding `lines` (sku, warehouse, quantity) for the order; waits for `confirmed`.
    pub async fn confirm(&self, order_id: Uuid, lines: &[(&str, Uuid, i64)]) -> Envelope {
        let envelope = self.reserved(order_id, lines).await;
        self.wait_for_status(order_id, "confirmed").await;
        envelope
    }

    /// Sends `inventory.reserved` without waiting.
    pub async fn reserved(&self, order_id: Uuid, lines: &[(&str, Uuid, i64)]) -> Envelope {
        let payload = InventoryReserved {
            reservation_id: Uuid::now_v7(),
            order_id,
            lines: lines
                .iter()
                .map(|(sku, warehouse_id, quantity)| ReservedLine {
                    sku: (*sku).to_owned(),
                    warehouse_id: *warehouse_id,
                    quantity: *quantity,
                })
                .collect(),
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
        };
        self.inventory_says(order_id, &payload).await
    }

    /// Plays inventory failing to hold `shortages` (sku, requested, available); waits for `rejected`.
    pub async fn reject(&self, order_id: Uuid, shortages: &[(&str, i64, i64)]) -> Envelope {
        let payload = InventoryReservationFailed {
            order_id,
            shortages: shortages
                .iter()
                .map(|(sku, requested, available)| ShortLine {
                    sku: (*sku).to_owned(),
                    requested: *requested,
                    available: *available,
                })
                .collect(),
        };
        let envelope = self.inventory_says(order_id, &payload).await;
        self.wait_for_status(order_id, "rejected").await;
        envelope
    }

    /// Sends `inventory.released` (a hold lapsed or released by staff) and waits until it is handled.
    pub async fn released(&self, order_id: Uuid, reservation_id: Uuid, reason: &str) -> Envelope {
        let payload = InventoryReleased {
            reservation_id,
            order_id,
            reason: reason.to_owned(),
        };
        let envelope = self.inventory_says(order_id, &payload).await;
        self.handled(&envelope).await;
        envelope
    }

    /// The orders service's events of `event_type` for `order_id`, in recording order.
    pub async fn outbox(&self, event_type: EventType, order_id: Uuid) -> Vec<Envelope> {
        let bodies: Vec<String> = ok(sqlx::query_scalar(
            "SELECT envelope::text FROM orders.outbox WHERE event_type = $1 AND aggregate_id = $2 \
             ORDER BY position",
        )
        .bind(event_type.as_str())
        .bind(order_id.to_string())
        .fetch_all(self.db.pool())
        .await);
        bodies
            .iter()
            .map(|body| ok(Envelope::from_json(body.as_bytes())))
            .collect()
    }

    /// The order's timeline (as staff, one page of up to 100).
    pub async fn timeline(&self, order_id: Uuid) -> Vec<Value> {
        let staff = self.user(Role::Admin);
        let reply = self
            .get(
                &format!("/api/v1/orders/{order_id}/events?limit=100"),
                Some(&staff),
            )
            .await;
        reply.expect(StatusCode::OK)["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A confirmed order of `customer` held at `warehouse`: (order id, its lines as (sku, quantity)).
    pub async fn confirmed_order(
        &self,
        customer: &User,
        warehouse: Uuid,
        lines: &[(&str, i64)],
    ) -> Uuid {
        let priced: Vec<(&str, i64, i64)> = lines.iter().map(|(s, q)| (*s, *q, 250)).collect();
        let order = self.order_for(customer, &priced).await;
        let id = id_of(&order);
        let held: Vec<(&str, Uuid, i64)> = lines.iter().map(|(s, q)| (*s, warehouse, *q)).collect();
        self.confirm(id, &held).await;
        id
    }

    /// Creates a shipment as `staff`.
    pub async fn create_shipment(
        &self,
        staff: &User,
        order_id: Uuid,
        warehouse: Uuid,
        lines: &[(&str, i64)],
        proof_required: bool,
    ) -> Reply {
        let body = json!({
            "warehouse_id": warehouse,
            "lines": lines.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect::<Vec<_>>(),
            "proof_required": proof_required,
        });
        self.post(
            &format!("/api/v1/orders/{order_id}/shipments"),
            Some(staff),
            &body,
        )
        .await
    }

    /// A shipment created and assigned to `driver`; returns its body.
    pub async fn assigned_shipment(
        &self,
        staff: &User,
        driver: &User,
        order_id: Uuid,
        warehouse: Uuid,
        lines: &[(&str, i64)],
        proof_required: bool,
    ) -> Value {
        let created = self
            .create_shipment(staff, order_id, warehouse, lines, proof_required)
            .await;
        let id = created.expect(StatusCode::CREATED)["id"].clone();
        let reply = self
            .post(
                &format!(
                    "/api/v1/shipments/{}/assign",
                    id.as_str().unwrap_or_default()
                ),
                Some(staff),
                &json!({"driver_id": driver.id}),
            )
            .await;
        reply.expect(StatusCode::OK).clone()
    }

    /// Posts a tracking event as `user`.
    pub async fn track(&self, shipment_id: Uuid, user: &User, body: Value) -> Reply {
        self.post(
            &format!("/api/v1/shipments/{shipment_id}/tracking-events"),
            Some(user),
            &body,
        )
        .await
    }

    /// Moves a shipment through `statuses` as `driver`, each applied.
    pub async fn drive(&self, shipment_id: Uuid, driver: &User, statuses: &[&str]) {
        for status in statuses {
            let reply = self
                .track(shipment_id, driver, json!({"status": status}))
                .await;
            let body = reply.expect(StatusCode::CREATED);
            assert_eq!(body["applied"], true, "{status}: {body}");
        }
    }
}
