//! Services and gateway wired together in one process, as `logicore all` does, exercised only through the
//! gateway: the scenarios the issues name as "done when".

use std::collections::HashMap;

use serde_json::{Value, json};
use testkit::{TestDb, TestServer};

struct Platform {
    gateway: TestServer,
    _users: TestServer,
    _inventory: TestServer,
    _db: TestDb,
    client: reqwest::Client,
}

impl Platform {
    async fn start() -> Self {
        let db = TestDb::new();
        let base = testkit::settings_with(
            &[("DATABASE_URL", &db.url)],
            &logicore::services::sections(),
        );
        let users_app =
            users::build(&users::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("users: {e}"));
        let users = TestServer::spawn(users_app.router).await;
        let users_url = users.url("");
        // The other services fetch LogiCore's public signing keys from this users service.
        let base = testkit::settings_with(
            &[
                ("DATABASE_URL", &db.url),
                ("LOGICORE_AUTH__USERS_URL", &users_url),
            ],
            &logicore::services::sections(),
        );
        let inventory_app = inventory::build(
            &inventory::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("inventory: {e}"));
        let inventory = TestServer::spawn(inventory_app.router).await;

        let inventory_url = inventory.url("");
        let settings = testkit::settings_with(
            &[
                ("DATABASE_URL", &db.url),
                ("USER_SERVICE_URL", &users_url),
                ("INVENTORY_SERVICE_URL", &inventory_url),
                ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000"),
            ],
            &logicore::services::sections(),
        );
        let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
        let router = gateway::build(&config, vec![users::openapi(), inventory::openapi()])
            .await
            .unwrap_or_else(|e| panic!("gateway: {e}"));
        users::create_admin(
            &users::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}")),
            "admin@slice.test",
            Some("Admin-password-1"),
        )
        .await
        .unwrap_or_else(|e| panic!("admin: {e}"));
        Self {
            gateway: TestServer::spawn(router).await,
            _users: users,
            _inventory: inventory,
            _db: db,
            client: testkit::client(),
        }
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.0, 200, "{}", response.1);
        response.1["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.post(self.gateway.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        (response.status().as_u16(), testkit::json(response).await)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.gateway.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (response.status().as_u16(), testkit::json(response).await)
    }
}

#[tokio::test]
async fn an_admin_stocks_two_warehouses_and_reserves_through_the_gateway_with_a_ledger_that_explains_on_hand()
 {
    let platform = Box::pin(Platform::start()).await;
    let admin = platform.login("admin@slice.test", "Admin-password-1").await;
    let token = Some(admin.as_str());

    let mut warehouses = Vec::new();
    for (code, priority) in [("NORTH", 1), ("SOUTH", 2)] {
        let (status, body) = platform
            .post(
                "/api/v1/inventory/warehouses",
                token,
                json!({"code": code, "name": format!("{code} hub"), "address": "1 Dock Road", "priority": priority}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        warehouses.push(body["id"].as_str().unwrap_or_default().to_owned());
    }
    let (status, product) = platform
        .post(
            "/api/v1/inventory/products",
            token,
            json!({"sku": "WIDGET-1", "name": "Widget", "reorder_point": 5}),
        )
        .await;
    assert_eq!(status, 201, "{product}");

    let (status, body) = platform
        .post(
            "/api/v1/inventory/adjustments",
            token,
            json!({"sku": "WIDGET-1", "warehouse_id": warehouses[0], "delta": 50, "reason": "receipt"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = platform
        .post(
            "/api/v1/inventory/transfers",
            token,
            json!({"sku": "WIDGET-1", "from_warehouse_id": warehouses[0], "to_warehouse_id": warehouses[1], "quantity": 20}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");

    let order_id = uuid::Uuid::now_v7();
    let (status, reservation) = platform
        .post(
            "/api/v1/inventory/reservations",
            token,
            json!({"order_id": order_id, "lines": [{"sku": "WIDGET-1", "quantity": 40}]}),
        )
        .await;
    assert_eq!(status, 201, "{reservation}");
    assert_eq!(reservation["status"], "held");
    let reserved: i64 = reservation["lines"]
        .as_array()
        .map(|lines| lines.iter().filter_map(|l| l["quantity"].as_i64()).sum())
        .unwrap_or_default();
    assert_eq!(reserved, 40, "{reservation}");

    let (status, problem) = platform
        .post(
            "/api/v1/inventory/reservations",
            token,
            json!({"order_id": uuid::Uuid::now_v7(), "lines": [{"sku": "WIDGET-1", "quantity": 100}]}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        problem["short_lines"],
        json!([{"sku": "WIDGET-1", "requested": 100, "available": 10}])
    );

    let product_id = product["id"].as_str().unwrap_or_default();
    let (status, availability) = platform
        .get(
            &format!("/api/v1/inventory/products/{product_id}/availability"),
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{availability}");
    let (status, movements) = platform
        .get("/api/v1/inventory/movements?sku=WIDGET-1&limit=100", &admin)
        .await;
    assert_eq!(status, 200, "{movements}");
    let mut ledger: HashMap<String, i64> = HashMap::new();
    for movement in movements["data"].as_array().into_iter().flatten() {
        *ledger
            .entry(
                movement["warehouse_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += movement["delta"].as_i64().unwrap_or_default();
    }
    let per_warehouse = availability["warehouses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(per_warehouse.len(), 2, "{availability}");
    for level in per_warehouse {
        let warehouse = level["warehouse_id"].as_str().unwrap_or_default();
        assert_eq!(
            Some(ledger.get(warehouse).copied().unwrap_or_default()),
            level["on_hand"].as_i64(),
            "ledger does not explain on_hand of {warehouse}: {movements}"
        );
    }
}

#[tokio::test]
async fn a_customer_may_read_products_but_not_adjust_stock_through_the_gateway() {
    let platform = Box::pin(Platform::start()).await;
    let (status, _) = platform
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "cust@slice.test", "password": "customer-pass-1", "full_name": "Cust"}),
        )
        .await;
    assert_eq!(status, 201);
    let customer = platform.login("cust@slice.test", "customer-pass-1").await;
    let (status, _) = platform.get("/api/v1/inventory/products", &customer).await;
    assert_eq!(status, 200);
    let (status, problem) = platform
        .post(
            "/api/v1/inventory/adjustments",
            Some(&customer),
            json!({"sku": "X", "warehouse_id": uuid::Uuid::now_v7(), "delta": 1, "reason": "receipt"}),
        )
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "FORBIDDEN");
}
