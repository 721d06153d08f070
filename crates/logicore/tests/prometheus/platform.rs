//! `logicore all` for the test, and the traffic it is given.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::all::{ADMIN_EMAIL, ADMIN_PASSWORD, AllServices};

/// `logicore all` on free ports, with a first admin; the job name and `/metrics` address of each listener.
pub struct Platform {
    all: AllServices,
    pub targets: BTreeMap<&'static str, String>,
    client: reqwest::Client,
}

impl Platform {
    pub async fn start() -> Self {
        // Its own exchange and cache prefix: other tests use the same RabbitMQ and Redis.
        let run = uuid::Uuid::new_v4().simple().to_string();
        let exchange = format!("lc_prometheus_{run}");
        let key_prefix = format!("lc-prometheus-{run}:");
        let all = AllServices::start(&[
            ("LOGICORE_MESSAGING__EXCHANGE", exchange.as_str()),
            ("LOGICORE_REDIS__KEY_PREFIX", key_prefix.as_str()),
            ("LOGICORE_INVENTORY__STOCK_GAUGE_INTERVAL_MS", "500"),
        ])
        .await;
        // The gateway's /metrics is on its admin listener; each service serves its own.
        let targets = [
            ("logicore-gateway", "admin"),
            ("logicore-users", "users"),
            ("logicore-inventory", "inventory"),
            ("logicore-orders", "orders"),
        ]
        .into_iter()
        .map(|(job, listener)| (job, format!("127.0.0.1:{}", all.listeners[listener])))
        .collect();
        Self {
            all,
            targets,
            client: testkit::client(),
        }
    }

    /// Users, stock, an import, cached reads, one order confirmed through the saga and one rejected, a
    /// 404: something for the RED, event, cache and business panels to show.
    pub async fn drive_traffic(&self) {
        let post = Method::POST;
        let admin = self.all.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let registration = json!({"email": "prom@logicore.test", "password": "correct-horse-9", "full_name": "Prom"});
        self.all
            .call(post.clone(), "/api/v1/auth/register", None, registration)
            .await;
        let customer = self
            .all
            .token("prom@logicore.test", "correct-horse-9")
            .await;
        self.all
            .call(
                Method::GET,
                "/api/v1/users/me",
                Some(&customer),
                Value::Null,
            )
            .await;
        let warehouse = self
            .all
            .call(
                post.clone(),
                "/api/v1/inventory/warehouses",
                Some(&admin),
                json!({"code": "PROM", "name": "Prom", "address": "1 Dock Road", "priority": 1}),
            )
            .await;
        let product = self
            .all
            .call(
                post.clone(),
                "/api/v1/inventory/products",
                Some(&admin),
                json!({"sku": "PROM-1", "name": "Gauge", "reorder_point": 5}),
            )
            .await;
        self.all.call(
            post.clone(),
            "/api/v1/inventory/adjustments",
            Some(&admin),
            json!({"sku": "PROM-1", "warehouse_id": warehouse["id"], "delta": 8, "reason": "receipt"}),
        )
        .await;
        let csv = "sku,name,warehouse_code,quantity\nPROM-2,Dial,PROM,3\nPROM-3,Cog,NOWHERE,1\n";
        let imported = self
            .client
            .post(format!("{}/api/v1/inventory/import", self.all.gateway))
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
            self.all
                .call(Method::GET, &availability, Some(&customer), Value::Null)
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
                .all
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
                        .all
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
                self.all.gateway,
                uuid::Uuid::now_v7()
            ))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(missing.status(), 404);
    }
}
