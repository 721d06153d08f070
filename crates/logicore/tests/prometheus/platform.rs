//! `logicore all` for the test, and the traffic it is given.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::logicore;
use crate::{Killed, free_port};

/// `logicore all` on free ports, with a first admin; the job name and `/metrics` address of each listener.
pub struct Platform {
    _server: Killed,
    gateway: String,
    pub targets: BTreeMap<&'static str, String>,
    client: reqwest::Client,
    _db: testkit::TestDb,
}

impl Platform {
    pub async fn start() -> Self {
        let db = testkit::TestDb::new();
        let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
        // Its own exchange and cache prefix: other tests use the same RabbitMQ and Redis.
        let run = uuid::Uuid::new_v4().simple().to_string();
        let exchange = format!("lc_prometheus_{run}");
        let key_prefix = format!("lc-prometheus-{run}:");
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("GATEWAY_PORT", ports[0].as_str()),
            ("LOGICORE_GATEWAY__ADMIN_PORT", ports[1].as_str()),
            ("LOGICORE_USERS__PORT", ports[2].as_str()),
            ("LOGICORE_INVENTORY__PORT", ports[3].as_str()),
            ("LOGICORE_ORDERS__PORT", ports[4].as_str()),
            ("ADMIN_EMAIL", "root@logicore.test"),
            ("ADMIN_PASSWORD", "Admin-password-1"),
            ("LOGICORE_MESSAGING__EXCHANGE", exchange.as_str()),
            ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
            ("LOGICORE_REDIS__KEY_PREFIX", key_prefix.as_str()),
            ("LOGICORE_INVENTORY__STOCK_GAUGE_INTERVAL_MS", "500"),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "100000"),
        ];
        let server = Killed(
            logicore(&env)
                .stdout(Stdio::null())
                .arg("all")
                .spawn()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let gateway = format!("http://127.0.0.1:{}", ports[0]);
        let client = testkit::client();
        testkit::eventually("the gateway to be ready", Duration::from_secs(60), || {
            let request = client.get(format!("{gateway}/readyz"));
            async move {
                request
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        // The gateway's /metrics is on its admin listener; each service serves its own.
        let targets = BTreeMap::from([
            ("logicore-gateway", format!("127.0.0.1:{}", ports[1])),
            ("logicore-users", format!("127.0.0.1:{}", ports[2])),
            ("logicore-inventory", format!("127.0.0.1:{}", ports[3])),
            ("logicore-orders", format!("127.0.0.1:{}", ports[4])),
        ]);
        Self {
            _server: server,
            gateway,
            targets,
            client,
            _db: db,
        }
    }

    /// A call through the gateway that must succeed; its JSON body.
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.gateway));
        if !body.is_null() {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status();
        let body: Value = testkit::json(response).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn token(&self, email: &str, password: &str) -> String {
        let login = json!({"email": email, "password": password});
        let tokens = self
            .call(Method::POST, "/api/v1/auth/login", None, login)
            .await;
        tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Users, stock, an import, cached reads, one order confirmed through the saga and one rejected, a
    /// 404: something for the RED, event, cache and business panels to show.
    pub async fn drive_traffic(&self) {
        let post = Method::POST;
        let admin = self.token("root@logicore.test", "Admin-password-1").await;
        let registration = json!({"email": "prom@logicore.test", "password": "correct-horse-9", "full_name": "Prom"});
        self.call(post.clone(), "/api/v1/auth/register", None, registration)
            .await;
        let customer = self.token("prom@logicore.test", "correct-horse-9").await;
        self.call(
            Method::GET,
            "/api/v1/users/me",
            Some(&customer),
            Value::Null,
        )
        .await;
        let warehouse = self
            .call(
                post.clone(),
                "/api/v1/inventory/warehouses",
                Some(&admin),
                json!({"code": "PROM", "name": "Prom", "address": "1 Dock Road", "priority": 1}),
            )
            .await;
        let product = self
            .call(
                post.clone(),
                "/api/v1/inventory/products",
                Some(&admin),
                json!({"sku": "PROM-1", "name": "Gauge", "reorder_point": 5}),
            )
            .await;
        self.call(
            post.clone(),
            "/api/v1/inventory/adjustments",
            Some(&admin),
            json!({"sku": "PROM-1", "warehouse_id": warehouse["id"], "delta": 8, "reason": "receipt"}),
        )
        .await;
        let csv = "sku,name,warehouse_code,quantity\nPROM-2,Dial,PROM,3\nPROM-3,Cog,NOWHERE,1\n";
        let imported = self
            .client
            .post(format!("{}/api/v1/inventory/import", self.gateway))
            .bearer_auth(&admin)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(imported.status().is_success(), "{}", imported.status());
        let availability = format!(
            "/api/v1/inventory/products/{}/availability",
            product["id"].as_str().unwrap_or_default()
        );
        for _ in 0..2 {
            self.call(Method::GET, &availability, Some(&customer), Value::Null)
                .await;
        }
        let order = |quantity: i64| {
            json!({
                "lines": [{"sku": "PROM-1", "quantity": quantity, "unit_price": 100}],
                "currency": "EUR",
                "shipping_address": {"name": "Prom", "street": "1 Canal Street", "city": "Amsterdam",
                                     "postal_code": "1011AA", "country": "NL"},
            })
        };
        for (quantity, outcome) in [(4, "confirmed"), (100, "rejected")] {
            let placed = self
                .call(
                    post.clone(),
                    "/api/v1/orders",
                    Some(&customer),
                    order(quantity),
                )
                .await;
            let path = format!(
                "/api/v1/orders/{}",
                placed["id"].as_str().unwrap_or_default()
            );
            testkit::eventually(
                &format!("the order to be {outcome}"),
                Duration::from_secs(30),
                || async {
                    let order = self
                        .call(Method::GET, &path, Some(&customer), Value::Null)
                        .await;
                    (order["status"] == outcome).then_some(())
                },
            )
            .await;
        }
        let missing = self
            .client
            .get(format!(
                "{}/api/v1/orders/{}",
                self.gateway,
                uuid::Uuid::now_v7()
            ))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(missing.status(), 404);
    }
}
