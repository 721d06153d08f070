//! The order saga across users, inventory and orders, in one process as `logicore all` runs them, driven
//! only through the gateway, on both event transports (PostgreSQL, and RabbitMQ when it is up).
//!
//! Every test gets its own database and its own exchange, so tests run in parallel on one broker.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{TestDb, TestServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const ADMIN_EMAIL: &str = "admin@saga.test";
const ADMIN_PASSWORD: &str = "Admin-password-1";
/// How long an event may take to cross the saga in a test before it is a failure.
const SAGA_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Postgres,
    RabbitMq,
}

struct Platform {
    gateway: TestServer,
    _servers: Vec<TestServer>,
    shutdown: CancellationToken,
    background: Vec<JoinHandle<()>>,
    /// Inventory's relay and consumers, started with the rest unless a test holds them back (then its consumer
    /// group is subscribed, so events wait for it, but nothing handles them).
    inventory_app: Option<inventory::App>,
    settings: platform::config::Settings,
    db: TestDb,
    client: reqwest::Client,
}

impl Platform {
    async fn start(transport: Transport) -> Self {
        // Boxed: starting every service is a future too large for the stack of each test that awaits it.
        Box::pin(Self::start_with(transport, &[], true)).await
    }

    /// Starts every service and the gateway; `extra` settings apply to all of them. With
    /// `inventory_running` false, inventory serves HTTP but handles no events until
    /// [`Platform::start_inventory_events`].
    async fn start_with(
        transport: Transport,
        extra: &[(&str, &str)],
        inventory_running: bool,
    ) -> Self {
        let db = TestDb::new();
        let exchange = format!("lc_test_{}", Uuid::new_v4().simple());
        let mut env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", &db.url),
            ("DB_POOL_MAX", "30"),
            // The rush test queues 500 creates on the pool while CI runs every suite in parallel on two
            // cores; past the default 2 s wait a create is a 503. The pool's own timeout has its tests.
            ("LOGICORE_DATABASE__ACQUIRE_TIMEOUT_MS", "20000"),
            // The gateway then may wait past its default 5 s call timeout, which would be a 504 here (and
            // configuration refuses a pool wait not below the gateway's deadline). These tests are about
            // the saga; the gateway's timeouts have tests of their own.
            ("GATEWAY_CIRCUIT_BREAKER_TIMEOUT", "30000"),
            ("LOGICORE_MESSAGING__EXCHANGE", &exchange),
            ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
            ("LOGICORE_MESSAGING__RETRY_DELAY_MS", "200"),
        ];
        if transport == Transport::RabbitMq {
            env.push(("RABBITMQ_URL", RABBITMQ_URL));
            env.push(("LOGICORE_MESSAGING__QUEUE_EXPIRES_MS", "60000"));
        }
        env.extend_from_slice(extra);
        let base = testkit::settings_with(&env, &logicore::services::sections());
        let shutdown = CancellationToken::new();
        let mut background = Vec::new();

        let users_app =
            users::build(&users::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("users: {e}"));
        background.extend(users_app.spawn_background(shutdown.clone()).await);
        let users = TestServer::spawn(users_app.router.clone()).await;
        let users_url = users.url("");
        // The other services fetch LogiCore's public signing keys from this users service.
        env.push(("LOGICORE_AUTH__USERS_URL", users_url.as_str()));
        let base = testkit::settings_with(&env, &logicore::services::sections());

        let inventory_app = inventory::build(
            &inventory::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("inventory: {e}"));
        let inventory = TestServer::spawn(inventory_app.router.clone()).await;
        let inventory_app = if inventory_running {
            background.extend(inventory_app.spawn_background(shutdown.clone()).await);
            None
        } else {
            // Inventory was deployed before and is down now: its consumer group exists (events queue up
            // for it), but nothing handles them until `start_inventory_events`.
            let outage = CancellationToken::new();
            let tasks = inventory_app.spawn_background(outage.clone()).await;
            outage.cancel();
            for task in tasks {
                task.await.unwrap_or_else(|e| panic!("inventory task: {e}"));
            }
            Some(inventory_app)
        };

        let orders_app =
            orders::build(&orders::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("orders: {e}"));
        background.extend(orders_app.spawn_background(shutdown.clone()).await);
        let orders = TestServer::spawn(orders_app.router.clone()).await;

        let inventory_url = inventory.url("");
        let orders_url = orders.url("");
        let mut gateway_env = env.clone();
        gateway_env.extend_from_slice(&[
            ("USER_SERVICE_URL", users_url.as_str()),
            ("INVENTORY_SERVICE_URL", inventory_url.as_str()),
            ("ORDER_SERVICE_URL", orders_url.as_str()),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000"),
        ]);
        let settings = testkit::settings_with(&gateway_env, &logicore::services::sections());
        let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
        let router = gateway::build(
            &config,
            vec![users::openapi(), inventory::openapi(), orders::openapi()],
        )
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
        users::create_admin(
            &users::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")),
            ADMIN_EMAIL,
            Some(ADMIN_PASSWORD),
        )
        .await
        .unwrap_or_else(|e| panic!("admin: {e}"));
        Self {
            gateway: TestServer::spawn(router).await,
            _servers: vec![users, inventory, orders],
            shutdown,
            background,
            inventory_app,
            settings: base,
            db,
            client: testkit::client(),
        }
    }

    async fn start_inventory_events(&mut self) {
        let app = self
            .inventory_app
            .take()
            .expect("inventory events were held back");
        self.background
            .extend(app.spawn_background(self.shutdown.clone()).await);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.background {
            task.await
                .unwrap_or_else(|e| panic!("background task: {e}"));
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.gateway.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: {status}: not JSON ({e}): {text}"))
        };
        (status, body)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body), &[])
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None, &[])
            .await
    }

    /// POSTs and insists on a 2xx, returning the body.
    async fn ok(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, response) = self.post(path, Some(token), body).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {response}"
        );
        response
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("a string field")
            .to_owned()
    }

    async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// A user with `role`, created by the admin, logged in: (id, token).
    async fn staff(&self, admin: &str, role: &str) -> (String, String) {
        let email = format!("{role}-{}@saga.test", Uuid::new_v4().simple());
        let password = "Staff-password-1";
        let user = self
            .ok(
                "/api/v1/users",
                admin,
                json!({"email": email, "password": password, "full_name": format!("A {role}"), "role": role}),
            )
            .await;
        let id = user["id"].as_str().expect("a string field").to_owned();
        (id, self.login(&email, password).await)
    }

    async fn register(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({
                    "email": format!("{}@saga.test", Uuid::new_v4().simple()),
                    "password": "Customer-password-1",
                    "full_name": name,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["access_token"]
            .as_str()
            .expect("a string field")
            .to_owned()
    }

    /// An access token for a customer id, signed as the users service signs them (for load tests where
    /// registering hundreds of accounts would only measure argon2).
    fn customer_token(&self, customer: Uuid) -> String {
        platform::auth::JwtKeys::new(&self.settings.auth)
            .issue(
                customer,
                &format!("{customer}@saga.test"),
                platform::auth::Role::Customer,
            )
            .unwrap_or_else(|e| panic!("token: {e}"))
            .0
    }

    async fn warehouse(&self, admin: &str, code: &str, priority: i64) -> String {
        let body = self
            .ok(
                "/api/v1/inventory/warehouses",
                admin,
                json!({"code": code, "name": format!("{code} hub"), "address": "1 Dock Road", "priority": priority}),
            )
            .await;
        body["id"].as_str().expect("a string field").to_owned()
    }

    /// Creates the product and receives `stock` (warehouse id → quantity); returns the product id.
    async fn product(&self, admin: &str, sku: &str, stock: &[(&str, i64)]) -> String {
        let product = self
            .ok(
                "/api/v1/inventory/products",
                admin,
                json!({"sku": sku, "name": format!("{sku} item")}),
            )
            .await;
        for (warehouse, quantity) in stock {
            self.ok(
                "/api/v1/inventory/adjustments",
                admin,
                json!({"sku": sku, "warehouse_id": warehouse, "delta": quantity, "reason": "receipt"}),
            )
            .await;
        }
        product["id"].as_str().expect("a string field").to_owned()
    }

    /// Per warehouse id: (on_hand, reserved).
    async fn stock(&self, admin: &str, product: &str) -> HashMap<String, (i64, i64)> {
        let (status, body) = self
            .get(
                &format!("/api/v1/inventory/products/{product}/availability"),
                Some(admin),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["warehouses"]
            .as_array()
            .unwrap_or_else(|| panic!("availability without warehouses: {body}"))
            .iter()
            .map(|w| {
                (
                    w["warehouse_id"]
                        .as_str()
                        .expect("a string field")
                        .to_owned(),
                    (
                        w["on_hand"].as_i64().expect("an integer field"),
                        w["reserved"].as_i64().expect("an integer field"),
                    ),
                )
            })
            .collect()
    }

    async fn order_status(&self, token: &str, order: &str) -> String {
        let (status, body) = self
            .get(&format!("/api/v1/orders/{order}"), Some(token))
            .await;
        assert_eq!(status, 200, "{body}");
        body["status"].as_str().expect("a string field").to_owned()
    }

    async fn await_order_status(&self, token: &str, order: &str, wanted: &str) {
        testkit::eventually(
            &format!("order {order} becomes {wanted}"),
            SAGA_DEADLINE,
            || async move { (self.order_status(token, order).await == wanted).then_some(()) },
        )
        .await;
    }

    /// Every order id with `status`, following the cursor.
    async fn orders_with_status(&self, token: &str, status: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/orders?status={status}&limit=100");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (code, page) = self.get(&path, Some(token)).await;
            assert_eq!(code, 200, "{page}");
            ids.extend(
                page["data"]
                    .as_array()
                    .expect("an array field")
                    .iter()
                    .map(|o| o["id"].as_str().expect("a string field").to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }

    async fn track(&self, driver: &str, shipment: &str, status: &str) {
        self.ok(
            &format!("/api/v1/shipments/{shipment}/tracking-events"),
            driver,
            json!({"status": status, "location": {"lat": 52.37, "lng": 4.89, "city": "Amsterdam", "country": "NL"}}),
        )
        .await;
    }
}

fn address(name: &str) -> Value {
    json!({"name": name, "street": "12 Canal Street", "city": "Amsterdam", "postal_code": "1011AA", "country": "NL"})
}

async fn rabbitmq_is_up() -> bool {
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5672"),
    )
    .await
    .is_ok_and(|connected| connected.is_ok())
}

/// The whole happy path: a customer orders two products, the order is confirmed by inventory, the dispatcher
/// ships it in two shipments from two warehouses, the driver delivers both with proof, the order becomes
/// delivered, and stock, reservations and the ledger agree.
async fn happy_path(transport: Transport) {
    let platform = Platform::start(transport).await;
    let admin = platform.admin().await;
    let north = platform.warehouse(&admin, "NORTH", 1).await;
    let south = platform.warehouse(&admin, "SOUTH", 2).await;
    let bolts = platform
        .product(&admin, "BOLT-1", &[(&north, 3), (&south, 10)])
        .await;
    let nuts = platform.product(&admin, "NUT-1", &[(&south, 5)]).await;
    let (_, dispatcher) = platform.staff(&admin, "dispatcher").await;
    let (driver_id, driver) = platform.staff(&admin, "driver").await;
    let customer = platform.register("Ada Customer").await;

    let order_body = json!({
        "lines": [{"sku": "BOLT-1", "quantity": 5, "unit_price": 250}, {"sku": "NUT-1", "quantity": 2, "unit_price": 40}],
        "currency": "EUR",
        "shipping_address": address("Ada Customer"),
    });
    let key = Uuid::new_v4().to_string();
    let (status, order) = platform
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(&customer),
            Some(order_body.clone()),
            &[("idempotency-key", &key)],
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "pending");
    let replayed = platform
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(&customer),
            Some(order_body),
            &[("idempotency-key", &key)],
        )
        .await;
    assert_eq!(
        replayed,
        (201, order.clone()),
        "the replay is the stored response"
    );
    let order_id = order["id"].as_str().expect("a string field").to_owned();

    platform
        .await_order_status(&customer, &order_id, "confirmed")
        .await;
    // Warehouses are drawn in priority order: NORTH's 3 bolts first, the rest from SOUTH.
    let held = platform.stock(&admin, &bolts).await;
    assert_eq!(held[&north], (3, 3));
    assert_eq!(held[&south], (10, 2));
    assert_eq!(platform.stock(&admin, &nuts).await[&south], (5, 2));

    let first = platform
        .ok(
            &format!("/api/v1/orders/{order_id}/shipments"),
            &dispatcher,
            json!({"warehouse_id": north, "lines": [{"sku": "BOLT-1", "quantity": 3}]}),
        )
        .await;
    let second = platform
        .ok(
            &format!("/api/v1/orders/{order_id}/shipments"),
            &dispatcher,
            json!({"warehouse_id": south, "lines": [{"sku": "BOLT-1", "quantity": 2}, {"sku": "NUT-1", "quantity": 2}]}),
        )
        .await;
    let (status, body) = platform
        .post(
            &format!("/api/v1/orders/{order_id}/shipments"),
            Some(&dispatcher),
            json!({"warehouse_id": south, "lines": [{"sku": "NUT-1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, 409, "nothing is left to ship: {body}");
    let shipments: Vec<String> = [&first, &second]
        .iter()
        .map(|s| s["id"].as_str().expect("a string field").to_owned())
        .collect();
    for shipment in &shipments {
        platform
            .ok(
                &format!("/api/v1/shipments/{shipment}/assign"),
                &dispatcher,
                json!({"driver_id": driver_id}),
            )
            .await;
    }

    platform.track(&driver, &shipments[0], "picked_up").await;
    platform
        .await_order_status(&customer, &order_id, "partially_shipped")
        .await;
    platform.track(&driver, &shipments[1], "picked_up").await;
    platform
        .await_order_status(&customer, &order_id, "shipped")
        .await;
    for shipment in &shipments {
        platform.track(&driver, shipment, "in_transit").await;
        platform.track(&driver, shipment, "out_for_delivery").await;
        platform
            .ok(
                &format!("/api/v1/shipments/{shipment}/proof"),
                &driver,
                json!({"type": "signature", "receiver_name": "Ada Customer", "reference": "sig-1"}),
            )
            .await;
        platform.track(&driver, shipment, "delivered").await;
    }
    platform
        .await_order_status(&customer, &order_id, "delivered")
        .await;

    // Picking up consumed the stock: on hand and reserved both dropped by what each shipment carried.
    let consumed = |product: &str, wanted: HashMap<String, (i64, i64)>| {
        let platform = &platform;
        let admin = admin.clone();
        let product = product.to_owned();
        async move {
            testkit::eventually(
                "inventory consumes the picked-up stock",
                SAGA_DEADLINE,
                || {
                    let (admin, product, wanted) = (admin.clone(), product.clone(), wanted.clone());
                    async move {
                        let stock = platform.stock(&admin, &product).await;
                        wanted
                            .iter()
                            .all(|(warehouse, levels)| stock.get(warehouse) == Some(levels))
                            .then_some(())
                    }
                },
            )
            .await
        }
    };
    consumed(
        &bolts,
        HashMap::from([(north.clone(), (0, 0)), (south.clone(), (8, 0))]),
    )
    .await;
    consumed(&nuts, HashMap::from([(south.clone(), (3, 0))])).await;

    // The ledger explains on hand: receipts minus what the shipments took.
    let (status, movements) = platform
        .get(
            "/api/v1/inventory/movements?sku=BOLT-1&limit=100",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{movements}");
    let mut net: HashMap<String, i64> = HashMap::new();
    for movement in movements["data"].as_array().expect("an array field") {
        *net.entry(
            movement["warehouse_id"]
                .as_str()
                .expect("a string field")
                .to_owned(),
        )
        .or_default() += movement["delta"].as_i64().expect("an integer field");
    }
    assert_eq!(net[&north], 0, "{movements}");
    assert_eq!(net[&south], 8, "{movements}");

    // The public tracking page: status and events, nothing personal.
    let tracking_number = first["tracking_number"].as_str().expect("a string field");
    let (status, page) = platform
        .get(&format!("/api/v1/track/{tracking_number}"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["status"], "delivered");
    let text = page.to_string();
    for secret in ["Ada", "Canal", "1011AA", &driver_id, &order_id] {
        assert!(!text.contains(secret), "tracking leaks {secret}: {text}");
    }

    let (status, timeline) = platform
        .get(
            &format!("/api/v1/orders/{order_id}/events"),
            Some(&customer),
        )
        .await;
    assert_eq!(status, 200, "{timeline}");
    assert!(timeline.to_string().contains("delivered"), "{timeline}");

    let stranger = platform.register("Eve Stranger").await;
    let (status, _) = platform
        .get(&format!("/api/v1/orders/{order_id}"), Some(&stranger))
        .await;
    assert_eq!(
        status, 404,
        "another customer's order does not exist for them"
    );

    // Customers list the shipments of their own orders, and only those.
    let (status, listed) = platform.get("/api/v1/shipments", Some(&customer)).await;
    assert_eq!(status, 200, "{listed}");
    let mut listed: Vec<&str> = listed["data"]
        .as_array()
        .expect("an array field")
        .iter()
        .map(|s| s["id"].as_str().expect("a string field"))
        .collect();
    listed.sort_unstable();
    let mut own: Vec<&str> = shipments.iter().map(String::as_str).collect();
    own.sort_unstable();
    assert_eq!(listed, own);
    let (status, listed) = platform
        .get(
            &format!("/api/v1/shipments?order_id={order_id}"),
            Some(&stranger),
        )
        .await;
    assert_eq!((status, &listed["data"]), (200, &json!([])), "{listed}");

    // A browser following the tracking link gets the page as HTML, through the gateway's public route.
    let response = platform
        .client
        .get(
            platform
                .gateway
                .url(&format!("/api/v1/track/{tracking_number}")),
        )
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("vary").to_ascii_lowercase().contains("accept"));
    assert!(header("content-security-policy").contains("default-src 'none'"));
    let html = response.text().await.unwrap_or_default();
    assert!(
        html.contains(tracking_number) && html.contains("Delivered"),
        "{html}"
    );
    for secret in ["Ada", "Canal", "1011AA", &driver_id, &order_id] {
        assert!(
            !html.contains(secret),
            "the HTML page leaks {secret}: {html}"
        );
    }

    // A create names its resource in `Location` through the gateway, and its replay names the same.
    let key = Uuid::new_v4().to_string();
    let mut locations = Vec::new();
    for _ in 0..2 {
        let response = platform
            .client
            .post(platform.gateway.url("/api/v1/orders"))
            .bearer_auth(&customer)
            .header("idempotency-key", &key)
            .json(&json!({"lines": [{"sku": "NUT-1", "quantity": 1}], "shipping_address": address("Ada Customer")}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 201);
        let location = response.headers().get("location").cloned();
        let order: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        let id = order["id"].as_str().expect("a string field");
        assert_eq!(
            location.as_ref().and_then(|v| v.to_str().ok()),
            Some(format!("/api/v1/orders/{id}").as_str())
        );
        locations.push(location);
    }
    assert_eq!(locations[0], locations[1]);
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_over_postgres() {
    Box::pin(happy_path(Transport::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_over_rabbitmq() {
    assert!(
        rabbitmq_is_up().await,
        "RabbitMQ must run on 127.0.0.1:5672"
    );
    Box::pin(happy_path(Transport::RabbitMq)).await;
}

/// Short stock rejects the order and says which lines were short; cancelling a confirmed order gives its
/// stock back; nothing is left held.
async fn rejection_and_cancellation(transport: Transport) {
    let platform = Platform::start(transport).await;
    let admin = platform.admin().await;
    let hub = platform.warehouse(&admin, "HUB", 1).await;
    let gears = platform.product(&admin, "GEAR-1", &[(&hub, 4)]).await;
    let customer = platform.register("Grace Customer").await;

    let (status, greedy) = platform
        .post(
            "/api/v1/orders",
            Some(&customer),
            json!({"lines": [{"sku": "GEAR-1", "quantity": 5}], "shipping_address": address("Grace")}),
        )
        .await;
    assert_eq!(status, 201, "{greedy}");
    let greedy = greedy["id"].as_str().expect("a string field").to_owned();
    platform
        .await_order_status(&customer, &greedy, "rejected")
        .await;
    let (_, timeline) = platform
        .get(&format!("/api/v1/orders/{greedy}/events"), Some(&customer))
        .await;
    assert!(
        timeline.to_string().contains("GEAR-1"),
        "short line named: {timeline}"
    );

    let (_, modest) = platform
        .post(
            "/api/v1/orders",
            Some(&customer),
            json!({"lines": [{"sku": "GEAR-1", "quantity": 3}], "shipping_address": address("Grace")}),
        )
        .await;
    let modest = modest["id"].as_str().expect("a string field").to_owned();
    platform
        .await_order_status(&customer, &modest, "confirmed")
        .await;
    assert_eq!(platform.stock(&admin, &gears).await[&hub], (4, 3));
    platform
        .ok(
            &format!("/api/v1/orders/{modest}/cancel"),
            &customer,
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(platform.order_status(&customer, &modest).await, "cancelled");
    testkit::eventually(
        "the cancelled order's stock is released",
        SAGA_DEADLINE,
        || {
            let (platform, admin, gears, hub) = (&platform, &admin, &gears, &hub);
            async move { (platform.stock(admin, gears).await[hub] == (4, 0)).then_some(()) }
        },
    )
    .await;
    let (status, body) = platform
        .post(
            &format!("/api/v1/orders/{modest}/cancel"),
            Some(&customer),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "INVALID_TRANSITION");
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_and_cancellation_over_postgres() {
    Box::pin(rejection_and_cancellation(Transport::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_and_cancellation_over_rabbitmq() {
    assert!(
        rabbitmq_is_up().await,
        "RabbitMQ must run on 127.0.0.1:5672"
    );
    Box::pin(rejection_and_cancellation(Transport::RabbitMq)).await;
}

/// An order nobody answers expires; when inventory comes back it reserves and then releases in event
/// order, so no stock stays held for the dead order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_order_expires_and_inventory_catches_up_without_holding_stock() {
    let mut platform = Box::pin(Platform::start_with(
        Transport::Postgres,
        &[
            ("LOGICORE_ORDERS__PENDING_TTL_SECS", "1"),
            ("LOGICORE_ORDERS__SWEEPER_INTERVAL_MS", "100"),
        ],
        false,
    ))
    .await;
    let admin = platform.admin().await;
    let hub = platform.warehouse(&admin, "HUB", 1).await;
    let cogs = platform.product(&admin, "COG-1", &[(&hub, 10)]).await;
    let customer = platform.register("Late Customer").await;
    let (status, order) = platform
        .post(
            "/api/v1/orders",
            Some(&customer),
            json!({"lines": [{"sku": "COG-1", "quantity": 2}], "shipping_address": address("Late")}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let order = order["id"].as_str().expect("a string field").to_owned();
    platform
        .await_order_status(&customer, &order, "expired")
        .await;

    platform.start_inventory_events().await;
    // Inventory reserves on the late order.created, then releases on order.expired, which follows it.
    let database = sqlx::PgPool::connect(&platform.db.url).await.unwrap();
    let order_id: Uuid = order.parse().unwrap();
    testkit::eventually(
        "inventory reserved and released the expired order's stock",
        SAGA_DEADLINE,
        || {
            let database = database.clone();
            async move {
                let status: Option<String> = sqlx::query_scalar(
                    "SELECT status FROM inventory.reservations WHERE order_id = $1",
                )
                .bind(order_id)
                .fetch_optional(&database)
                .await
                .unwrap();
                (status.as_deref() == Some("released")).then_some(())
            }
        },
    )
    .await;
    database.close().await;
    assert_eq!(platform.stock(&admin, &cogs).await[&hub], (10, 0));
    assert_eq!(platform.order_status(&customer, &order).await, "expired");
    platform.stop().await;
}

/// 500 customers order the last 100 units at once: exactly 100 confirmed, 400 rejected, none pending.
async fn last_units_rush(transport: Transport) {
    let platform = Platform::start(transport).await;
    let admin = platform.admin().await;
    let hub = platform.warehouse(&admin, "HUB", 1).await;
    let widgets = platform.product(&admin, "LAST-1", &[(&hub, 100)]).await;

    let customers: Vec<String> = (0..500)
        .map(|_| platform.customer_token(Uuid::now_v7()))
        .collect();
    let mut orders = tokio::task::JoinSet::new();
    for token in customers {
        let client = platform.client.clone();
        let url = platform.gateway.url("/api/v1/orders");
        orders.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&json!({"lines": [{"sku": "LAST-1", "quantity": 1}], "shipping_address": address("Rush")}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        });
    }
    let mut created = 0;
    while let Some(outcome) = orders.join_next().await {
        let (status, body) = outcome.expect("an order task");
        assert_eq!(status, 201, "{body}");
        created += 1;
    }
    assert_eq!(created, 500);

    testkit::eventually("no order is left pending", Duration::from_secs(180), || {
        let (platform, admin) = (&platform, &admin);
        async move {
            platform
                .orders_with_status(admin, "pending")
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        platform.orders_with_status(&admin, "confirmed").await.len(),
        100
    );
    assert_eq!(
        platform.orders_with_status(&admin, "rejected").await.len(),
        400
    );
    assert_eq!(platform.stock(&admin, &widgets).await[&hub], (100, 100));
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_100_units_go_to_exactly_100_of_500_customers_over_postgres() {
    Box::pin(last_units_rush(Transport::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_100_units_go_to_exactly_100_of_500_customers_over_rabbitmq() {
    assert!(
        rabbitmq_is_up().await,
        "RabbitMQ must run on 127.0.0.1:5672"
    );
    Box::pin(last_units_rush(Transport::RabbitMq)).await;
}

/// Creating an order through the gateway is one trace: the gateway's request span under the caller's,
/// the orders request it forwards, the relay's publish of `order.created`, inventory's handling of it
/// (with its SQL) and orders' handling of inventory's answer, each span a child of the one that caused it.
async fn an_order_is_one_trace(transport: Transport) {
    use opentelemetry::trace::SpanKind;
    use testkit::traces::attribute;

    testkit::traces::capture();
    let platform = Platform::start(transport).await;
    let admin = platform.admin().await;
    let depot = platform.warehouse(&admin, "TRACE", 1).await;
    platform.product(&admin, "TRACE-1", &[(&depot, 5)]).await;
    let customer = platform.register("Tracy Customer").await;
    let trace_id = Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let (status, order) = platform
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(&customer),
            Some(json!({
                "lines": [{"sku": "TRACE-1", "quantity": 2, "unit_price": 100}],
                "currency": "EUR",
                "shipping_address": address("Tracy Customer"),
            })),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().expect("an id").to_owned();
    platform
        .await_order_status(&customer, &order_id, "confirmed")
        .await;

    let service = |span: &opentelemetry_sdk::trace::SpanData| {
        attribute(span, platform::telemetry::traces::SERVICE_ATTRIBUTE)
    };
    let confirmation = |span: &opentelemetry_sdk::trace::SpanData| {
        span.name == "process inventory.reserved" && service(span).as_deref() == Some("orders")
    };
    let spans = testkit::traces::spans_of(&trace_id, SAGA_DEADLINE, |spans| {
        spans.iter().any(confirmation)
    })
    .await;
    let find = |what: &str, test: &dyn Fn(&opentelemetry_sdk::trace::SpanData) -> bool| {
        spans.iter().find(|span| test(span)).unwrap_or_else(|| {
            let seen: Vec<String> = spans
                .iter()
                .map(|s| format!("{} ({:?}, {:?})", s.name, service(s), s.span_kind))
                .collect();
            panic!("no {what} in {seen:?}")
        })
    };
    let gateway = find("gateway request span", &|s| {
        s.span_kind == SpanKind::Server && service(s).as_deref() == Some("gateway")
    });
    assert_eq!(gateway.parent_span_id.to_string(), caller_span);
    assert_eq!(
        attribute(gateway, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        attribute(gateway, "http.response.status_code").as_deref(),
        Some("201")
    );
    let orders = find("orders request span", &|s| {
        s.span_kind == SpanKind::Server && service(s).as_deref() == Some("orders")
    });
    assert_eq!(orders.parent_span_id, gateway.span_context.span_id());
    assert_eq!(
        attribute(orders, "http.route").as_deref(),
        Some("/api/v1/orders")
    );
    let publish = find("publish of order.created", &|s| {
        s.span_kind == SpanKind::Producer && s.name == "publish order.created"
    });
    assert_eq!(publish.parent_span_id, orders.span_context.span_id());
    let reservation = find("inventory's handling of order.created", &|s| {
        s.span_kind == SpanKind::Consumer
            && s.name == "process order.created"
            && service(s).as_deref() == Some("inventory")
    });
    assert_eq!(reservation.parent_span_id, orders.span_context.span_id());
    let settled = find("the settlement of order.created", &|s| {
        s.name == "settle order.created" && s.parent_span_id == reservation.span_context.span_id()
    });
    assert_eq!(
        attribute(settled, "messaging.operation.name").as_deref(),
        Some("ack")
    );
    let reserve = find("the reserve step", &|s| {
        s.name == "reserve" && s.parent_span_id == reservation.span_context.span_id()
    });
    let sql = find("SQL of the reservation", &|s| {
        s.parent_span_id == reserve.span_context.span_id() && s.span_kind == SpanKind::Client
    });
    assert_eq!(
        attribute(sql, "db.system.name").as_deref(),
        Some("postgresql")
    );
    let statements: Vec<String> = spans
        .iter()
        .filter(|s| s.parent_span_id == reserve.span_context.span_id())
        .flat_map(|s| s.events.iter())
        .flat_map(|event| event.attributes.iter())
        .filter(|kv| kv.key.as_str() == "db.statement" || kv.key.as_str() == "summary")
        .map(|kv| kv.value.to_string())
        .collect();
    assert!(
        statements.iter().any(|text| text.contains("$1")),
        "no statement with its parameters among {statements:?}"
    );
    let confirmed = find("orders' handling of inventory.reserved", &|s| {
        confirmation(s)
    });
    assert_eq!(confirmed.parent_span_id, reserve.span_context.span_id());
    find("the confirm step", &|s| {
        s.name == "confirm" && s.parent_span_id == confirmed.span_context.span_id()
    });
    // No span or span event carries what the customer sent: statements are recorded with `$n`, never
    // with values.
    for span in &spans {
        let events = span.events.iter().flat_map(|event| event.attributes.iter());
        for kv in span.attributes.iter().chain(events) {
            let value = kv.value.to_string();
            assert!(
                !value.contains("TRACE-1") && !value.contains("Canal Street"),
                "{}: {} = {value}",
                span.name,
                kv.key
            );
        }
    }
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_over_postgres() {
    Box::pin(an_order_is_one_trace(Transport::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_over_rabbitmq() {
    assert!(
        rabbitmq_is_up().await,
        "RabbitMQ must be running on 127.0.0.1:5672"
    );
    Box::pin(an_order_is_one_trace(Transport::RabbitMq)).await;
}
