//! Indexing at production volume (issue 21, item 7): with a year of data in every big table, each list,
//! filter and lookup the API serves, and each scan the background jobs make, reads through an index rather
//! than a sequential scan of a large table.
//!
//! What is checked is what the services really run: they serve real requests on random ports with
//! PostgreSQL's `auto_explain` loaded into every one of their sessions ([`testkit::plans`]), so the plan of
//! every statement a request or a job executes comes back and is walked here. docs/indexing.md records the
//! plans and what each index serves.

mod plans;
mod seed;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use testkit::plans::PlanCapture;
use testkit::{TestDb, TestServer};
use tokio_util::sync::CancellationToken;

const ADMIN_EMAIL: &str = "admin@indexing.test";
const ADMIN_PASSWORD: &str = "Admin-password-1";

/// The background jobs that scan tables, and a fragment of the statement by which each is recognised: the
/// test waits until each has run once at volume.
const JOBS: &[(&str, &str)] = &[
    (
        "pending order expiry sweeper",
        "FROM orders WHERE status = 'pending' AND pending_until <= now()",
    ),
    (
        "idempotency key pruning",
        "FROM idempotency_keys WHERE expires_at <= now()",
    ),
    (
        "reservation expiry sweeper",
        "FROM reservations WHERE status = 'held' AND expires_at <= now() ORDER BY",
    ),
    (
        "outbox relay",
        "FROM outbox WHERE sent_at IS NULL AND position >",
    ),
    ("outbox lag sample", "FROM outbox WHERE sent_at IS NULL"),
    ("outbox pruning", "WHERE sent_at < now()"),
    ("inbox pruning", "DELETE FROM inbox"),
    ("revocation feed", "FROM users.revocations"),
];

struct Services {
    servers: Vec<TestServer>,
    apps: (users::App, inventory::App, orders::App),
    client: reqwest::Client,
}

impl Services {
    async fn start(db: &TestDb) -> Self {
        let settings = testkit::settings_with(
            &[("DATABASE_URL", &db.url)],
            &logicore::services::sections(),
        );
        let users_config =
            users::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
        let users = users::build(&users_config)
            .await
            .unwrap_or_else(|e| panic!("users: {e}"));
        let users_server = TestServer::spawn(users.router.clone()).await;
        // The other services fetch LogiCore's public signing keys from this users service.
        let users_url = users_server.url("");
        let settings = testkit::settings_with(
            &[
                ("DATABASE_URL", &db.url),
                ("LOGICORE_AUTH__USERS_URL", &users_url),
            ],
            &logicore::services::sections(),
        );
        let inventory = inventory::build(
            &inventory::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("inventory: {e}"));
        let orders = orders::build(
            &orders::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("orders: {e}"));
        users::create_admin(&users_config, ADMIN_EMAIL, Some(ADMIN_PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let servers = vec![
            users_server,
            TestServer::spawn(inventory.router.clone()).await,
            TestServer::spawn(orders.router.clone()).await,
        ];
        Self {
            servers,
            apps: (users, inventory, orders),
            client: testkit::client(),
        }
    }

    /// The server of the service a path belongs to.
    fn url(&self, path: &str) -> String {
        let server = if path.starts_with("/api/v1/inventory") {
            &self.servers[1]
        } else if path.starts_with("/api/v1/orders")
            || path.starts_with("/api/v1/shipments")
            || path.starts_with("/api/v1/track")
        {
            &self.servers[2]
        } else {
            &self.servers[0]
        };
        server.url(path)
    }

    async fn send(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let mut request = match method {
            "POST" => self.client.post(self.url(path)),
            _ => self.client.get(self.url(path)),
        };
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            // Creating an order takes a key (and its lookup is checked too); the other POSTs ignore it.
            request = request
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let body = testkit::json(response).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn spawn_background(&self, shutdown: &CancellationToken) {
        let (users, inventory, orders) = &self.apps;
        users.spawn_background(shutdown.clone()).await;
        inventory.spawn_background(shutdown.clone()).await;
        orders.spawn_background(shutdown.clone()).await;
    }
}

/// The ids the requests name: rows from the middle of the seeded data.
struct Sample {
    user: String,
    customer: String,
    driver: String,
    warehouse: String,
    product: String,
    sku: String,
    movement: String,
    reservation: String,
    order: String,
    shipment: String,
    tracking_number: String,
    /// A day ago, for "since" filters that only the last day's rows pass.
    yesterday: String,
}

impl Sample {
    async fn read(connection: &mut PgConnection) -> Self {
        let one = async |connection: &mut PgConnection, sql: &'static str| -> String {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_one(connection)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        };
        Self {
            user: one(connection, "SELECT id::text FROM users.users WHERE email = 'user5003@seed.test'").await,
            customer: one(connection, "SELECT customer_id::text FROM orders.orders WHERE number = 51000").await,
            driver: one(connection, "SELECT driver_id::text FROM orders.shipments WHERE tracking_number = 'LC0000050001'").await,
            warehouse: one(connection, "SELECT id::text FROM inventory.warehouses WHERE code = 'WH003'").await,
            product: one(connection, "SELECT id::text FROM inventory.products WHERE sku = 'SKU-005000'").await,
            sku: "SKU-005000".into(),
            movement: one(connection, "SELECT id::text FROM inventory.movements WHERE reference = 'seed-500000'").await,
            reservation: one(connection, "SELECT id::text FROM inventory.reservations ORDER BY id OFFSET 50000 LIMIT 1").await,
            order: one(connection, "SELECT id::text FROM orders.orders WHERE number = 51000").await,
            shipment: one(connection, "SELECT id::text FROM orders.shipments WHERE tracking_number = 'LC0000050001'").await,
            tracking_number: "LC0000050001".into(),
            yesterday: one(connection, "SELECT to_char((now() - interval '1 day') AT TIME ZONE 'UTC', \
                                        'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')").await,
        }
    }

    /// Every list (first page, and the next through its cursor), filter and lookup of the API.
    fn reads(&self) -> Vec<String> {
        let Sample {
            user,
            customer,
            driver,
            warehouse,
            product,
            sku,
            movement,
            reservation,
            order,
            shipment,
            tracking_number,
            yesterday,
        } = self;
        vec![
            "/api/v1/users?limit=50".into(),
            "/api/v1/users?role=driver".into(),
            "/api/v1/users?status=inactive".into(),
            "/api/v1/users?q=user5003".into(),
            format!("/api/v1/users/{user}"),
            "/api/v1/users/me".into(),
            "/api/v1/inventory/warehouses".into(),
            format!("/api/v1/inventory/warehouses/{warehouse}"),
            "/api/v1/inventory/products?limit=50".into(),
            format!("/api/v1/inventory/products?sku={sku},SKU-000042"),
            "/api/v1/inventory/products?q=model 5000".into(),
            format!("/api/v1/inventory/products/{product}"),
            format!("/api/v1/inventory/products/{product}/availability"),
            "/api/v1/inventory/stock-levels?limit=50".into(),
            format!("/api/v1/inventory/stock-levels?sku={sku}"),
            format!("/api/v1/inventory/stock-levels?warehouse_id={warehouse}"),
            "/api/v1/inventory/stock-levels?below_reorder=true".into(),
            "/api/v1/inventory/movements?limit=50".into(),
            format!("/api/v1/inventory/movements?sku={sku}"),
            format!("/api/v1/inventory/movements?warehouse_id={warehouse}"),
            "/api/v1/inventory/movements?reason=damage".into(),
            format!("/api/v1/inventory/movements?sku={sku}&reason=receipt"),
            "/api/v1/inventory/movements?reason=count".into(),
            "/api/v1/inventory/movements?since=2020-01-01T00:00:00Z".into(),
            format!("/api/v1/inventory/movements?since={yesterday}"),
            format!("/api/v1/inventory/movements/{movement}"),
            format!("/api/v1/inventory/reservations/{reservation}"),
            "/api/v1/orders?limit=50".into(),
            "/api/v1/orders?status=pending".into(),
            "/api/v1/orders?status=confirmed,shipped".into(),
            format!("/api/v1/orders?customer_id={customer}"),
            "/api/v1/orders?created_after=2020-01-01T00:00:00Z".into(),
            format!("/api/v1/orders?created_after={yesterday}"),
            format!("/api/v1/orders/{order}"),
            format!("/api/v1/orders/{order}/events"),
            "/api/v1/shipments?limit=50".into(),
            "/api/v1/shipments?status=in_transit".into(),
            format!("/api/v1/shipments?driver_id={driver}"),
            format!("/api/v1/shipments?order_id={order}"),
            format!("/api/v1/shipments?customer_id={customer}"),
            format!("/api/v1/shipments/{shipment}"),
            format!("/api/v1/shipments/{shipment}/tracking-events"),
            format!("/api/v1/track/{tracking_number}"),
        ]
    }
}

/// Adds to `failures` every scan in the plans that reads a large table whole (a sequential scan) or mostly
/// (an index scan filtering away most of what it reads), naming the request, the statement, the table and
/// the filter; adds every scan to `report`.
fn check(
    what: &str,
    captured: Vec<Value>,
    large: &HashMap<String, f32>,
    failures: &mut BTreeSet<String>,
    report: &mut Vec<String>,
) {
    for plan in captured {
        let query = plans::query_text(&plan);
        let (cost, duration) = plans::cost_and_duration(&plan);
        for scan in plans::scans(&plan) {
            report.push(format!(
                "{what} | {query} | cost {cost:.1}, {duration:.3} ms | {scan}"
            ));
            let Some(&rows) = large.get(&scan.table) else {
                continue;
            };
            let whole = scan.node == "Seq Scan";
            let mostly = scan.examined() as f32 >= rows * plans::MOST_OF_A_TABLE;
            if whole || mostly {
                failures.insert(format!(
                    "{what}: `{query}` {} {} of {} ({rows} rows), filter {}",
                    if whole { "reads all" } else { "reads most" },
                    scan.examined(),
                    scan.table,
                    scan.filter.as_deref().unwrap_or("none")
                ));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_filter_and_lookup_reads_through_an_index_at_production_volume() {
    let started = Instant::now();
    let db = TestDb::new();
    let capture = PlanCapture::install(&db).await;
    let services = Box::pin(Services::start(&db)).await;

    let mut connection = PgConnection::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (written, vacuumed) = seed::seed(&mut connection).await;
    eprintln!("seeded in {written:?}, vacuumed and analyzed in {vacuumed:?}");
    let large = plans::large_tables(&mut connection).await;
    for (table, rows) in [
        ("users.users", seed::USERS),
        ("inventory.products", seed::PRODUCTS),
        ("inventory.movements", seed::MOVEMENTS),
        ("orders.orders", seed::ORDERS),
    ] {
        let estimated = large.get(table).copied().unwrap_or_default();
        assert!(
            (estimated - rows as f32).abs() < rows as f32 * 0.1,
            "{table} should hold about {rows} rows, the planner thinks {estimated}"
        );
    }
    let sample = Sample::read(&mut connection).await;
    // Plans of start-up and seeding are not the API's.
    capture.take();

    let mut failures = BTreeSet::new();
    let mut report = Vec::new();
    let login = services
        .send(
            "POST",
            "/api/v1/auth/login",
            "",
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    check(
        "POST /api/v1/auth/login",
        capture.take(),
        &large,
        &mut failures,
        &mut report,
    );
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = login["refresh_token"].as_str().unwrap_or_default();
    services
        .send(
            "POST",
            "/api/v1/auth/refresh",
            "",
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    check(
        "POST /api/v1/auth/refresh",
        capture.take(),
        &large,
        &mut failures,
        &mut report,
    );

    for path in sample.reads() {
        let page = services.send("GET", &path, &token, None).await;
        check(
            &format!("GET {path}"),
            capture.take(),
            &large,
            &mut failures,
            &mut report,
        );
        if let Some(cursor) = page["next_cursor"].as_str() {
            let separator = if path.contains('?') { '&' } else { '?' };
            let next = format!("{path}{separator}cursor={cursor}");
            services.send("GET", &next, &token, None).await;
            check(
                &format!("GET {path} (next page)"),
                capture.take(),
                &large,
                &mut failures,
                &mut report,
            );
        }
    }

    // Writes that look rows up: an adjustment, and an order through the saga (inventory reserves it, orders
    // confirms it), with the consumers, the relay and the sweepers running.
    let shutdown = CancellationToken::new();
    services.spawn_background(&shutdown).await;
    let adjustment = json!({"sku": sample.sku, "warehouse_id": warehouse_of(&mut connection, &sample.sku).await,
                            "delta": 5, "reason": "receipt"});
    services
        .send(
            "POST",
            "/api/v1/inventory/adjustments",
            &token,
            Some(adjustment),
        )
        .await;
    let order = services
        .send(
            "POST",
            "/api/v1/orders",
            &token,
            Some(json!({
                "customer_id": sample.customer,
                "lines": [{"sku": sample.sku, "quantity": 1, "unit_price": 1000}],
                "shipping_address": {"name": "Ada Lovelace", "street": "12 Analytical Engine Lane",
                                     "city": "Amsterdam", "postal_code": "1011 AB", "country": "NL"},
            })),
        )
        .await;
    let order_path = format!(
        "/api/v1/orders/{}",
        order["id"].as_str().unwrap_or_default()
    );
    let mut captured = Vec::new();
    testkit::eventually("the order to be confirmed", Duration::from_secs(60), || {
        let (services, token, order_path) = (&services, &token, &order_path);
        async move {
            let order = services.send("GET", order_path, token, None).await;
            (order["status"] == "confirmed").then_some(())
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        captured.extend(capture.take());
        let missing: Vec<&str> = JOBS
            .iter()
            .filter(|(_, fragment)| {
                !captured
                    .iter()
                    .any(|plan| plans::query_text(plan).contains(fragment))
            })
            .map(|(job, _)| *job)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "these jobs never ran (or their statements changed): {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    check(
        "background and saga",
        captured,
        &large,
        &mut failures,
        &mut report,
    );

    eprintln!("{}", report.join("\n"));
    eprintln!("test took {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "sequential scans of large tables:\n{}",
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
}

async fn warehouse_of(connection: &mut PgConnection, sku: &str) -> String {
    sqlx::query_scalar::<_, String>(
        "SELECT s.warehouse_id::text FROM inventory.stock_levels s JOIN inventory.products p \
         ON p.id = s.product_id WHERE p.sku = $1 ORDER BY s.warehouse_id LIMIT 1",
    )
    .bind(sku)
    .fetch_one(connection)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}
